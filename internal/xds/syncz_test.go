package xds

import "testing"

func TestTypeSync(t *testing.T) {
	for _, c := range []struct {
		name        string
		sent, acked string
		nack        *nackRecord
		want        SyncState
		wantNACK    string
	}{
		{name: "nothing sent", want: NotSent},
		{name: "acked what was sent", sent: "a-2", acked: "a-2", want: Synced},
		{name: "sent, not acked yet", sent: "a-3", acked: "a-2", want: Stale},
		{name: "sent, never acked", sent: "a-1", want: Stale},
		{name: "nacked", sent: "a-3", acked: "a-2", nack: &nackRecord{nonce: "a-3", reason: "bad cluster"}, want: Stale, wantNACK: "bad cluster"},
		{name: "nack of an older response, newer sent", sent: "a-4", acked: "a-2", nack: &nackRecord{nonce: "a-3", reason: "bad"}, want: Stale},
	} {
		got := typeSync(c.sent, c.acked, c.nack)
		if got.State != c.want || got.NACK != c.wantNACK {
			t.Errorf("%s: typeSync = %+v, want state %s nack %q", c.name, got, c.want, c.wantNACK)
		}
	}
}

package xds

import "sort"

// SyncState is istioctl proxy-status's per-type state.
type SyncState string

const (
	// Synced: the proxy ACKed the last response of the type sent to it.
	Synced SyncState = "SYNCED"
	// Stale: a response was sent and not ACKed yet, or it was NACKed (as
	// istioctl reports a rejection: STALE, with the proxy's error).
	Stale SyncState = "STALE"
	// NotSent: nothing of the type was sent to the proxy.
	NotSent SyncState = "NOT SENT"
)

type nackRecord struct{ nonce, reason string }

// TypeSync is one resource type's sync state for one proxy. Sent and
// Acked are response nonces: they identify a response on this stream,
// which is what an ACK names.
type TypeSync struct {
	State SyncState `json:"state"`
	Sent  string    `json:"sent,omitempty"`
	Acked string    `json:"acked,omitempty"`
	// NACK is the proxy's error when it rejected the last response sent.
	NACK string `json:"nack,omitempty"`
}

// ProxySync is /debug/syncz's entry for one connected proxy.
type ProxySync struct {
	Node      string `json:"node"`
	Namespace string `json:"namespace,omitempty"`
	// Version is the store version the proxy's config was last
	// translated from.
	Version uint64   `json:"version"`
	CDS     TypeSync `json:"cds"`
	LDS     TypeSync `json:"lds"`
	EDS     TypeSync `json:"eds"`
	RDS     TypeSync `json:"rds"`
}

// typeSync computes one type's state from the nonce last sent, the one
// last ACKed and the last NACK not yet followed by an ACK.
func typeSync(sent, acked string, nack *nackRecord) TypeSync {
	ts := TypeSync{Sent: sent, Acked: acked}
	switch {
	case sent == "":
		ts.State = NotSent
	case nack != nil && nack.nonce == sent:
		ts.State, ts.NACK = Stale, nack.reason
	case acked == sent:
		ts.State = Synced
	default:
		ts.State = Stale
	}
	return ts
}

// Syncz lists the connected proxies' per-type sync states, sorted by node
// id: istiod's /debug/syncz, what `trellis proxy-status` prints.
func (s *Server) Syncz() []ProxySync {
	ps := s.streams.all()
	out := make([]ProxySync, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		one := func(i int) TypeSync {
			u := typeURLs[i]
			var n *nackRecord
			if r, ok := p.nacked[u]; ok {
				n = &r
			}
			return typeSync(p.sent[u], p.acked[u], n)
		}
		// typeURLs order: CDS, EDS, LDS, RDS.
		out = append(out, ProxySync{Node: p.proxy.ID, Namespace: p.proxy.Namespace, Version: p.version,
			CDS: one(0), EDS: one(1), LDS: one(2), RDS: one(3)})
		p.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

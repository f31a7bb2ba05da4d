package dashboard

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"sort"
)

// Request is one access-log line, with the keys the page shows.
type Request struct {
	Pod           string  `json:"pod"`
	Namespace     string  `json:"namespace"`
	Workload      string  `json:"workload"`
	StartTime     string  `json:"start_time"`
	Method        string  `json:"method"`
	Path          string  `json:"path"`
	Protocol      string  `json:"protocol"`
	ResponseCode  flexInt `json:"response_code"`
	ResponseFlags string  `json:"response_flags"`
	Duration      flexInt `json:"duration"`
	Authority     string  `json:"authority"`
	Upstream      string  `json:"upstream_cluster"`
	UpstreamHost  string  `json:"upstream_host"`
	Direction     string  `json:"direction"`
	Peer          string  `json:"downstream_peer_principal"`
	TraceID       string  `json:"trace_id"`
	RequestID     string  `json:"request_id"`
}

// flexInt takes a number or a numeric string: loggers differ on which
// they write for codes and durations.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" || string(b) == "-" {
		*f = 0
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(append(append([]byte{'"'}, b...), '"'), &n); err != nil {
		return err
	}
	v, err := n.Float64()
	*f = flexInt(v)
	return err
}

// tailBytes bounds how much of each proxy log is read per call: the
// newest lines are what the page shows.
const tailBytes = 256 << 10

// RecentRequests reads the newest access-log lines of every pod's
// sidecar, newest first, at most limit. Lines that are not JSON (the
// proxy's own logs share the file) or lack a method are skipped.
func RecentRequests(pods []Pod, limit int) []Request {
	out := []Request{}
	for _, p := range pods {
		if p.ProxyLog == "" {
			continue
		}
		for _, r := range tailRequests(p.ProxyLog, limit) {
			r.Pod, r.Namespace, r.Workload = p.Name, p.Namespace, p.Workload
			out = append(out, r)
		}
	}
	// RFC 3339 UTC with fixed milliseconds sorts as text.
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime > out[j].StartTime })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func tailRequests(path string, limit int) []Request {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > tailBytes {
		if _, err := f.Seek(fi.Size()-tailBytes, io.SeekStart); err != nil {
			return nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, tailBytes))
	if err != nil {
		return nil
	}
	var out []Request
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), tailBytes)
	for sc.Scan() {
		line := sc.Bytes()
		// `trellis up` may prefix nothing, but a line cut by the seek
		// or a text log line is not an object: find the object.
		i := bytes.IndexByte(line, '{')
		if i < 0 {
			continue
		}
		var r Request
		if json.Unmarshal(line[i:], &r) != nil || r.Method == "" && r.ResponseCode == 0 {
			continue
		}
		out = append(out, r)
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

package upstream

import (
	"context"
	"sync"
	"time"
)

// A ConnTimer gives one downstream connection's requests, one at a time,
// their route timeouts: a context that ends only when its deadline passes,
// reused from request to request with one timer, where
// context.WithTimeout costs a context, a timer and their cancellation
// plumbing per request. Its parent must never end (the HTTP/1.1 fast
// path's connection context), so that the deadline is the only way the
// request's context ends; the direct path then bounds its reads and writes
// with the connection's deadline instead of watching the context.
type ConnTimer struct {
	parent context.Context
	cur    *deadlineCtx
}

// NewConnTimer returns the timer of a connection whose requests' contexts
// derive from parent, which never ends.
func NewConnTimer(parent context.Context) *ConnTimer {
	return &ConnTimer{parent: parent}
}

// Start returns the context of the connection's next request, ending
// timeout from now. Stop must be called before the next Start.
func (t *ConnTimer) Start(timeout time.Duration) context.Context {
	c := t.cur
	if c == nil || c.Err() != nil {
		// New, or the last request's deadline passed: that context stays
		// ended for whoever still holds it.
		c = &deadlineCtx{Context: t.parent, done: make(chan struct{})}
		c.timer = time.AfterFunc(time.Hour, c.timerFired)
		c.timer.Stop()
		t.cur = c
	}
	c.mu.Lock()
	c.deadline = time.Now().Add(timeout)
	c.armed = true
	c.gen++
	c.mu.Unlock()
	c.timer.Reset(timeout)
	return c
}

// Stop ends the current request: its context no longer ends, and what was
// registered to run when it did never runs.
func (t *ConnTimer) Stop() {
	c := t.cur
	if c == nil {
		return
	}
	c.timer.Stop()
	c.mu.Lock()
	if c.err == nil {
		c.armed = false
		c.gen++
		clear(c.funcs)
		c.funcs = c.funcs[:0]
	}
	c.mu.Unlock()
}

// deadlineCtx is a ConnTimer's context. It implements AfterFunc, so that
// contexts derived from it (and context.AfterFunc) register with it
// instead of starting a goroutine each to watch Done.
type deadlineCtx struct {
	context.Context // the parent, for values
	done            chan struct{}
	timer           *time.Timer

	mu       sync.Mutex
	deadline time.Time
	armed    bool
	gen      uint64 // counts arming and disarming
	err      error
	funcs    []registered
	nextID   uint64
}

type registered struct {
	id uint64
	f  func()
}

type deadlineKey struct{}

func (c *deadlineCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

// Err also ends the context when its deadline passed but the timer has
// yet to run, so that a read that failed at the connection's deadline
// finds its context ended.
func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.armed && !time.Now().Before(c.deadline) {
		c.endLocked()
	}
	return c.err
}

func (c *deadlineCtx) Value(key any) any {
	if key == (deadlineKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *deadlineCtx) timerFired() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.armed && !time.Now().Before(c.deadline) {
		c.endLocked()
	}
}

func (c *deadlineCtx) endLocked() {
	c.err = context.DeadlineExceeded
	close(c.done)
	for _, r := range c.funcs {
		go r.f()
	}
	c.funcs = nil
}

// AfterFunc is what context.AfterFunc and derived contexts use on a
// parent that has it: f runs once the context ends, unless stop ran
// first.
func (c *deadlineCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.funcs = append(c.funcs, registered{id, f})
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, r := range c.funcs {
			if r.id == id {
				c.funcs = append(c.funcs[:i], c.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// DeadlineOnly returns the deadline of ctx when a ConnTimer made it (ctx
// may add values to it) and so it can end no other way: the direct path,
// and the HTTP connection manager for request bodies, then bound reads and
// writes with the connection's deadline instead of watching ctx.
func DeadlineOnly(ctx context.Context) (time.Time, bool) {
	c, ok := ctx.Value(deadlineKey{}).(*deadlineCtx)
	if !ok || ctx.Done() != c.done {
		return time.Time{}, false
	}
	return c.Deadline()
}

package upstream

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// A ConnTimer's context ends at its deadline (Done, Err, and what
// context.AfterFunc and derived contexts registered), not when the request
// was stopped in time, and the next request after one that timed out gets
// a fresh context while the old one stays ended.
func TestConnTimer(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	ct := NewConnTimer(parent)

	ctx := ct.Start(time.Hour)
	if ctx.Value(ctxKey{}) != "v" {
		t.Errorf("the parent's values are lost")
	}
	if dl, ok := DeadlineOnly(context.WithValue(ctx, ctxKey{}, "w")); !ok || time.Until(dl) < 59*time.Minute {
		t.Errorf("DeadlineOnly through a value: %v, %v", dl, ok)
	}
	child, cancel := context.WithCancel(ctx)
	if _, ok := DeadlineOnly(child); ok {
		t.Errorf("DeadlineOnly of a cancellable child")
	}
	cancel()
	ran := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(ran) })
	if !stop() {
		t.Errorf("stopping an AfterFunc before the deadline failed")
	}
	ct.Stop()

	// Stopped in time: nothing ends.
	ctx = ct.Start(50 * time.Millisecond)
	late := make(chan struct{})
	context.AfterFunc(ctx, func() { close(late) })
	ct.Stop()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-late:
		t.Fatalf("a stopped request's AfterFunc ran")
	case <-ctx.Done():
		t.Fatalf("a stopped request's context ended")
	default:
	}
	if ctx.Err() != nil {
		t.Fatalf("Err of a stopped request: %v", ctx.Err())
	}

	// Past the deadline: everything ends.
	ctx = ct.Start(30 * time.Millisecond)
	fired := make(chan struct{})
	context.AfterFunc(ctx, func() { close(fired) })
	child, cancel = context.WithTimeout(ctx, time.Hour)
	defer cancel()
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the AfterFunc did not run at the deadline")
	}
	<-ctx.Done()
	<-child.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("Err after the deadline: %v, child %v", ctx.Err(), child.Err())
	}
	ct.Stop()
	next := ct.Start(time.Hour)
	if next == ctx || next.Err() != nil || ctx.Err() == nil {
		t.Errorf("after a timeout: the next context is the old one or ended, or the old one came back")
	}
	ct.Stop()
}

// Err reports a deadline that passed before the timer ran.
func TestConnTimerErrAtDeadline(t *testing.T) {
	ct := NewConnTimer(context.Background())
	ctx := ct.Start(time.Nanosecond)
	time.Sleep(time.Millisecond)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("Err past the deadline: %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Errorf("Err ended the context but Done is open")
	}
	ct.Stop()
}

// On a warm connection a request's timeout costs no allocation.
func TestConnTimerAllocations(t *testing.T) {
	ct := NewConnTimer(context.Background())
	ct.Start(time.Hour)
	ct.Stop()
	if n := testing.AllocsPerRun(100, func() {
		ctx := ct.Start(time.Hour)
		DeadlineOnly(ctx)
		ct.Stop()
	}); n > 0 {
		t.Errorf("%v allocations per request", n)
	}
}

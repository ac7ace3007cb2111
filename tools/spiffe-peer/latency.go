package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// streamsPerConnection keeps each connection well under any HTTP/2 concurrent-stream limit a server may set.
const streamsPerConnection = 50

// firstUpdate is a watcher that reports its first X.509 context and then just holds the stream open.
type firstUpdate struct {
	once sync.Once
	done chan struct{}
}

func (f *firstUpdate) OnX509ContextUpdate(*workloadapi.X509Context) {
	f.once.Do(func() { close(f.done) })
}
func (f *firstUpdate) OnX509ContextWatchError(error) {}

// latency opens `streams` FetchX509SVID streams (through WatchX509Context) and keeps them open, then times the first
// response of `samples` further FetchX509SVID calls made one after another, as a new workload would see it.
func latency(ctx context.Context, addr string, streams, samples int) error {
	holdCtx, stopHolding := context.WithCancel(ctx)
	defer stopHolding()
	var holders sync.WaitGroup
	defer holders.Wait()
	opened := time.Now()
	var clients []*workloadapi.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	var waiting []chan struct{}
	for i := 0; i < streams; i++ {
		if i%streamsPerConnection == 0 {
			c, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
			if err != nil {
				return err
			}
			clients = append(clients, c)
		}
		waiting = append(waiting, hold(holdCtx, clients[len(clients)-1], &holders))
	}
	if err := awaitFirst(ctx, waiting, streams); err != nil {
		return err
	}
	openSeconds := time.Since(opened).Seconds()

	probe, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		return err
	}
	defer probe.Close()
	var times []float64
	for i := 0; i < samples; i++ {
		started := time.Now()
		if _, err := probe.FetchX509SVID(ctx); err != nil {
			return fmt.Errorf("FetchX509SVID with %d streams open: %w", streams, err)
		}
		times = append(times, time.Since(started).Seconds()*1000)
	}
	sort.Float64s(times)
	emit(map[string]any{
		"streams":          streams,
		"samples":          samples,
		"open_all_seconds": openSeconds,
		"p50_ms":           quantile(times, 0.50),
		"p99_ms":           quantile(times, 0.99),
		"max_ms":           times[len(times)-1],
	})
	return nil
}

// hold opens one FetchX509SVID stream on c (through WatchX509Context) and keeps it open until holdCtx ends; the
// channel closes at its first response.
func hold(holdCtx context.Context, c *workloadapi.Client, holders *sync.WaitGroup) chan struct{} {
	w := &firstUpdate{done: make(chan struct{})}
	holders.Add(1)
	go func() {
		defer holders.Done()
		_ = c.WatchX509Context(holdCtx, w)
	}()
	return w.done
}

// awaitFirst waits for every held stream's first response.
func awaitFirst(ctx context.Context, waiting []chan struct{}, streams int) error {
	for _, done := range waiting {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("the %d held streams did not all get a first response: %w", streams, ctx.Err())
		}
	}
	return nil
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.5) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// latencyPerConnection is the method of Sigil's bench/agent.py with go-spiffe as the client. Each of `streams` held
// FetchX509SVID streams (WatchX509Context) has a connection of its own, as each workload has its own, opened `wave`
// at a time. Then each of `samples` probes dials a new connection and waits until it is ready, and only then times
// FetchX509SVID on it, from the call to the first response (the SVIDs parsed, as go-spiffe hands them over): the
// connect is excluded. grpc-go calls a connection ready once the server's HTTP/2 SETTINGS frame has arrived
// (internal/transport/http2_client.go, readServerPreface), so the server's work at accept is done before the clock
// starts; the dial is timed on its own. A line {"probing": true} is printed just before the first probe, so that
// whoever runs this can read the server's CPU time over the probes alone.
func latencyPerConnection(ctx context.Context, addr string, streams, samples, wave int) error {
	holdCtx, stopHolding := context.WithCancel(ctx)
	defer stopHolding()
	var holders sync.WaitGroup
	defer holders.Wait()
	var clients []*workloadapi.Client
	defer func() {
		stopHolding()
		for _, c := range clients {
			c.Close()
		}
	}()
	opened := time.Now()
	for first := 0; first < streams; first += wave {
		var waiting []chan struct{}
		for i := first; i < min(first+wave, streams); i++ {
			c, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
			if err != nil {
				return err
			}
			clients = append(clients, c)
			waiting = append(waiting, hold(holdCtx, c, &holders))
		}
		if err := awaitFirst(ctx, waiting, streams); err != nil {
			return err
		}
	}
	openSeconds := time.Since(opened).Seconds()

	emit(map[string]any{"probing": true})
	cpu := cpuSeconds()
	var times, dials []float64
	for i := 0; i < samples; i++ {
		dialed := time.Now()
		// WithBlock makes the dial return once the connection is ready; go-spiffe dials with grpc.DialContext,
		// which honours it.
		probe, err := workloadapi.New(ctx, workloadapi.WithAddr(addr),
			workloadapi.WithDialOptions(grpc.WithBlock())) //nolint:staticcheck // the one way to wait for ready
		if err != nil {
			return err
		}
		dials = append(dials, time.Since(dialed).Seconds()*1000)
		started := time.Now()
		_, err = probe.FetchX509SVID(ctx)
		elapsed := time.Since(started).Seconds() * 1000
		probe.Close()
		if err != nil {
			return fmt.Errorf("FetchX509SVID with %d streams open: %w", streams, err)
		}
		times = append(times, elapsed)
	}
	cpuMs := (cpuSeconds() - cpu) * 1000
	sort.Float64s(times)
	sort.Float64s(dials)
	emit(map[string]any{
		"streams":          streams,
		"samples":          samples,
		"per_connection":   true,
		"open_all_seconds": openSeconds,
		"p50_ms":           quantile(times, 0.50),
		"p99_ms":           quantile(times, 0.99),
		"max_ms":           times[len(times)-1],
		"dial_p50_ms":      quantile(dials, 0.50),
		"dial_p99_ms":      quantile(dials, 0.99),
		"cpu_ms_per_probe": cpuMs / float64(samples),
	})
	return nil
}

// cpuSeconds is the user plus system CPU time this process has used so far.
func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

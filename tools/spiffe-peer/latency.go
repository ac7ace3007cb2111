package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
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
		w := &firstUpdate{done: make(chan struct{})}
		waiting = append(waiting, w.done)
		c := clients[len(clients)-1]
		holders.Add(1)
		go func() {
			defer holders.Done()
			_ = c.WatchX509Context(holdCtx, w)
		}()
	}
	for _, done := range waiting {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("the %d held streams did not all get a first response: %w", streams, ctx.Err())
		}
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

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.5) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

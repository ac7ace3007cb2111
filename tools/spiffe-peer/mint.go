package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"flag"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// mintMain drives SPIRE's server API: svid.v1.SVID/MintX509SVID over the server's admin socket (a local caller is
// an admin there), with CSRs made before the clock starts, from `concurrency` callers at once.
func mintMain(args []string) {
	flags := flag.NewFlagSet("mint", flag.ExitOnError)
	socket := flags.String("socket", "", "spire-server's admin socket (-socketPath)")
	trustDomain := flags.String("trust-domain", "example.org", "trust domain of the SPIFFE IDs minted")
	count := flags.Int("count", 1000, "X509-SVIDs to mint")
	concurrency := flags.Int("concurrency", 32, "requests in flight at once")
	_ = flags.Parse(args)
	if *socket == "" {
		fail(fmt.Errorf("-socket is required"))
	}
	csrs := make([][]byte, *count)
	for i := range csrs {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			fail(err)
		}
		id := &url.URL{Scheme: "spiffe", Host: *trustDomain, Path: fmt.Sprintf("/bench/w%d", i)}
		csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		if err != nil {
			fail(err)
		}
	}
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	client := svidv1.NewSVIDClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// One warm-up call: the connection and the server's first signing are not what is measured.
	if _, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csrs[0]}); err != nil {
		fail(fmt.Errorf("MintX509SVID: %w", err))
	}
	var next atomic.Int64
	var failed atomic.Value
	var workers sync.WaitGroup
	started := time.Now()
	for w := 0; w < *concurrency; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(csrs) {
					return
				}
				if _, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csrs[i]}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	workers.Wait()
	elapsed := time.Since(started).Seconds()
	if err, _ := failed.Load().(error); err != nil {
		fail(fmt.Errorf("MintX509SVID: %w", err))
	}
	emit(map[string]any{
		"svids":            *count,
		"concurrency":      *concurrency,
		"seconds":          elapsed,
		"svids_per_second": float64(*count) / elapsed,
	})
}

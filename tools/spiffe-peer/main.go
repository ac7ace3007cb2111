// Command spiffe-peer is a small Workload API client on go-spiffe, the most used SPIFFE library, that Sigil's tests
// and bench/spire.py run against Sigil's node agent and against SPIRE's agent alike, so that "SPIFFE-compatible"
// means "go-spiffe accepts it" and not only "py-spiffe accepts it".
//
// Every subcommand takes -addr (unix:///path/to/socket), prints one JSON document per result on stdout and exits 1
// with the reason on stderr when go-spiffe refuses what it was given:
//
//	check   -audience A            X.509 context verified with x509svid.Verify against its own bundle set, a
//	                               JWT-SVID for A validated with jwtsvid.ParseAndValidate against the JWT bundles
//	                               (-x509-only: the X.509 context alone)
//	watch   -updates N             one line per X.509 context update, until N have arrived
//	verify  -chain F | -jwt F      a foreign X509-SVID chain (PEM) or JWT-SVID verified with this workload's bundles
//	latency -streams N -samples M  FetchX509SVID first-response latency with N other streams held open
//	                               (-per-connection: one connection per held stream and per probe, the probe's
//	                               connect excluded, as Sigil's bench/agent.py measures)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: spiffe-peer check|watch|verify|latency|mint [flags]"))
	}
	command, args := os.Args[1], os.Args[2:]
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	addr := flags.String("addr", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address, unix:///path")
	timeout := flags.Duration("timeout", 30*time.Second, "give up after this long")
	var run func(ctx context.Context, client *workloadapi.Client) error
	switch command {
	case "check":
		audience := flags.String("audience", "spiffe-peer", "JWT-SVID audience")
		x509Only := flags.Bool("x509-only", false, "check the X.509 context alone (no JWT-SVID)")
		run = func(ctx context.Context, c *workloadapi.Client) error { return check(ctx, c, *audience, *x509Only) }
	case "watch":
		updates := flags.Int("updates", 2, "X.509 context updates to wait for")
		run = func(ctx context.Context, c *workloadapi.Client) error { return watch(ctx, c, *updates) }
	case "verify":
		chain := flags.String("chain", "", "PEM file holding the X509-SVID chain to verify, leaf first")
		token := flags.String("jwt", "", "file holding a JWT-SVID to validate")
		audience := flags.String("audience", "spiffe-peer", "audience the JWT-SVID must carry")
		run = func(ctx context.Context, c *workloadapi.Client) error {
			return verify(ctx, c, *chain, *token, *audience)
		}
	case "latency":
		streams := flags.Int("streams", 1000, "FetchX509SVID streams held open while measuring")
		samples := flags.Int("samples", 200, "first responses to time")
		perConnection := flags.Bool("per-connection", false,
			"one connection per held stream and per probe, the probe's connect excluded")
		wave := flags.Int("wave", 100, "with -per-connection: held streams opened at a time")
		run = func(ctx context.Context, _ *workloadapi.Client) error {
			if *perConnection {
				return latencyPerConnection(ctx, *addr, *streams, *samples, max(1, *wave))
			}
			return latency(ctx, *addr, *streams, *samples)
		}
	case "mint":
		mintMain(args)
		return
	default:
		fail(fmt.Errorf("unknown command %q", command))
	}
	_ = flags.Parse(args)
	if *addr == "" {
		fail(fmt.Errorf("-addr (or SPIFFE_ENDPOINT_SOCKET) is required"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(*addr))
	if err != nil {
		fail(err)
	}
	defer client.Close()
	if err := run(ctx, client); err != nil {
		fail(err)
	}
}

func emit(value any) {
	line, err := json.Marshal(value)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(line))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "spiffe-peer:", err)
	os.Exit(1)
}

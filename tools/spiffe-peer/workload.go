package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// contextReport is what check and watch print about one X.509 context.
type contextReport struct {
	SpiffeID    string   `json:"spiffe_id"`
	VerifiedID  string   `json:"verified_id"`
	Serial      string   `json:"serial"`
	NotAfter    string   `json:"not_after"`
	ChainLength int      `json:"chain_length"`
	SVIDs       int      `json:"svids"`
	Bundles     []string `json:"x509_bundles"`
	Authorities []string `json:"authorities"`
}

// report verifies the default SVID of x509Context against the context's own bundle set, as a workload would
// before presenting it, and describes both.
func report(x509Context *workloadapi.X509Context) (*contextReport, error) {
	svid := x509Context.DefaultSVID()
	if svid == nil {
		return nil, errors.New("X.509 context without an SVID")
	}
	verified, _, err := x509svid.Verify(svid.Certificates, x509Context.Bundles)
	if err != nil {
		return nil, fmt.Errorf("x509svid.Verify refused the SVID against its own bundle: %w", err)
	}
	leaf := svid.Certificates[0]
	out := &contextReport{
		SpiffeID:    svid.ID.String(),
		VerifiedID:  verified.String(),
		Serial:      hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotAfter:    leaf.NotAfter.UTC().Format(time.RFC3339),
		ChainLength: len(svid.Certificates),
		SVIDs:       len(x509Context.SVIDs),
		Bundles:     trustDomains(x509Context.Bundles),
	}
	if own, ok := x509Context.Bundles.Get(svid.ID.TrustDomain()); ok {
		for _, authority := range own.X509Authorities() {
			out.Authorities = append(out.Authorities, hex.EncodeToString(authority.SubjectKeyId))
		}
	}
	return out, nil
}

func trustDomains(set *x509bundle.Set) []string {
	names := []string{}
	for _, bundle := range set.Bundles() {
		names = append(names, bundle.TrustDomain().Name())
	}
	sort.Strings(names)
	return names
}

func check(ctx context.Context, client *workloadapi.Client, audience string, x509Only bool) error {
	x509Context, err := client.FetchX509Context(ctx)
	if err != nil {
		return fmt.Errorf("FetchX509Context: %w", err)
	}
	x509Report, err := report(x509Context)
	if err != nil {
		return err
	}
	if x509Only {
		emit(map[string]any{"x509": x509Report})
		return nil
	}
	token, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience})
	if err != nil {
		return fmt.Errorf("FetchJWTSVID: %w", err)
	}
	jwtBundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		return fmt.Errorf("FetchJWTBundles: %w", err)
	}
	validated, err := jwtsvid.ParseAndValidate(token.Marshal(), jwtBundles, []string{audience})
	if err != nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate refused the JWT-SVID: %w", err)
	}
	jwtDomains := []string{}
	for _, bundle := range jwtBundles.Bundles() {
		jwtDomains = append(jwtDomains, bundle.TrustDomain().Name())
	}
	sort.Strings(jwtDomains)
	emit(map[string]any{
		"x509":        x509Report,
		"jwt_id":      validated.ID.String(),
		"jwt_aud":     validated.Audience,
		"jwt_expiry":  validated.Expiry.UTC().Format(time.RFC3339),
		"jwt_bundles": jwtDomains,
	})
	return nil
}

// watcher prints each update and stops the watch after the wanted number.
type watcher struct {
	left   int
	cancel context.CancelFunc
	err    error
}

func (w *watcher) OnX509ContextUpdate(x509Context *workloadapi.X509Context) {
	out, err := report(x509Context)
	if err != nil {
		w.err = err
		w.cancel()
		return
	}
	emit(out)
	w.left--
	if w.left <= 0 {
		w.cancel()
	}
}

func (w *watcher) OnX509ContextWatchError(err error) {
	fmt.Fprintln(os.Stderr, "spiffe-peer: watch error (go-spiffe retries):", err)
}

func watch(ctx context.Context, client *workloadapi.Client, updates int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &watcher{left: updates, cancel: cancel}
	err := client.WatchX509Context(ctx, w)
	if w.err != nil {
		return w.err
	}
	if w.left > 0 {
		return fmt.Errorf("%d update(s) still missing when the watch ended: %w", w.left, err)
	}
	return nil
}

func verify(ctx context.Context, client *workloadapi.Client, chainPath, tokenPath, audience string) error {
	if (chainPath == "") == (tokenPath == "") {
		return errors.New("give exactly one of -chain and -jwt")
	}
	if tokenPath != "" {
		raw, err := os.ReadFile(tokenPath)
		if err != nil {
			return err
		}
		bundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			return fmt.Errorf("FetchJWTBundles: %w", err)
		}
		validated, err := jwtsvid.ParseAndValidate(strings.TrimSpace(string(raw)), bundles, []string{audience})
		if err != nil {
			return fmt.Errorf("jwtsvid.ParseAndValidate refused the JWT-SVID: %w", err)
		}
		emit(map[string]string{"verified_id": validated.ID.String()})
		return nil
	}
	raw, err := os.ReadFile(chainPath)
	if err != nil {
		return err
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(raw); block != nil; block, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", chainPath, err)
		}
		certs = append(certs, cert)
	}
	bundles, err := client.FetchX509Bundles(ctx)
	if err != nil {
		return fmt.Errorf("FetchX509Bundles: %w", err)
	}
	verified, _, err := x509svid.Verify(certs, bundles)
	if err != nil {
		return fmt.Errorf("x509svid.Verify refused the SVID: %w", err)
	}
	emit(map[string]any{"verified_id": verified.String(), "x509_bundles": trustDomains(bundles)})
	return nil
}

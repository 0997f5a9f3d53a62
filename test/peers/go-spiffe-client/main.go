// go-spiffe-client: the SPIFFE project's own Go library (go-spiffe v2) as a workload, against the
// Workload API that SPIFFE_ENDPOINT_SOCKET names and nothing else. It prints one JSON line per event
// on stdout, for test/peers/workload-api-clients.test.ts to read:
//
//	x509      the X509Source's SVID (each update: after a rotation too), verified against its bundle
//	jwt       a JWT-SVID from the JWTSource, checked with jwtsvid.ParseAndValidate against the
//	          JWT bundle the same socket serves, and by the socket's own ValidateJWTSVID
//	jwtbundle each JWT bundle update seen by a WatchJWTBundles watcher
//	done      after -rotations X.509 updates past the first; error: anything that failed
//
// Every wait is bounded by -timeout; the program exits 0 after "done", 1 after "error".
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

type event map[string]any

func emit(e event) {
	line, _ := json.Marshal(e)
	fmt.Println(string(line))
}

func fail(what string, err error) {
	emit(event{"event": "error", "what": what, "error": err.Error()})
	os.Exit(1)
}

type bundleWatcher struct{}

func (bundleWatcher) OnJWTBundlesUpdate(set *jwtbundle.Set) {
	domains := map[string][]string{}
	for _, b := range set.Bundles() {
		var kids []string
		for kid := range b.JWTAuthorities() {
			kids = append(kids, kid)
		}
		sort.Strings(kids)
		domains[b.TrustDomain().IDString()] = kids
	}
	emit(event{"event": "jwtbundle", "bundles": domains})
}

func (bundleWatcher) OnJWTBundlesWatchError(err error) {
	emit(event{"event": "jwtbundle-error", "error": err.Error()})
}

func main() {
	audience := flag.String("audience", "", "the audience of the JWT-SVID to fetch and validate")
	rotations := flag.Int("rotations", 1, "X.509-SVID updates to see after the first before exiting")
	timeout := flag.Duration("timeout", 90*time.Second, "bound on the whole run")
	flag.Parse()
	if *audience == "" {
		fail("flags", errors.New("-audience is required"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	// No options: the address comes from SPIFFE_ENDPOINT_SOCKET, as for any go-spiffe workload.
	x509Source, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		fail("NewX509Source", err)
	}
	defer x509Source.Close()
	jwtSource, err := workloadapi.NewJWTSource(ctx)
	if err != nil {
		fail("NewJWTSource", err)
	}
	defer jwtSource.Close()
	client, err := workloadapi.New(ctx)
	if err != nil {
		fail("workloadapi.New", err)
	}
	defer client.Close()
	go func() { _ = client.WatchJWTBundles(ctx, bundleWatcher{}) }()

	reportX509 := func() string {
		svid, err := x509Source.GetX509SVID()
		if err != nil {
			fail("GetX509SVID", err)
		}
		leaf := svid.Certificates[0]
		bundle, err := x509Source.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
		if err != nil {
			fail("GetX509BundleForTrustDomain", err)
		}
		// The chain must verify against the bundle the same source serves.
		if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
			fail("x509svid.Verify", err)
		}
		emit(event{"event": "x509", "id": svid.ID.String(), "serial": leaf.SerialNumber.Text(16), "notAfter": leaf.NotAfter.UTC().Format(time.RFC3339), "authorities": len(bundle.X509Authorities()), "keyUsageDigitalSignature": leaf.KeyUsage&x509.KeyUsageDigitalSignature != 0})
		return leaf.SerialNumber.String()
	}

	reportJWT := func() {
		svid, err := jwtSource.FetchJWTSVID(ctx, jwtsvid.Params{Audience: *audience})
		if err != nil {
			fail("FetchJWTSVID", err)
		}
		token := svid.Marshal()
		parsed, err := jwtsvid.ParseAndValidate(token, jwtSource, []string{*audience})
		if err != nil {
			fail("jwtsvid.ParseAndValidate", err)
		}
		validated, err := client.ValidateJWTSVID(ctx, token, *audience)
		if err != nil {
			fail("ValidateJWTSVID", err)
		}
		emit(event{"event": "jwt", "id": parsed.ID.String(), "audience": parsed.Audience, "expiry": parsed.Expiry.UTC().Format(time.RFC3339), "validatedBySocket": validated.ID.String()})
	}

	last := reportX509()
	reportJWT()
	seen := 0
	for seen < *rotations {
		select {
		case <-ctx.Done():
			fail("waiting for a rotation", ctx.Err())
		case <-x509Source.Updated():
		}
		svid, err := x509Source.GetX509SVID()
		if err != nil {
			fail("GetX509SVID", err)
		}
		if svid.Certificates[0].SerialNumber.String() == last {
			continue
		}
		last = reportX509()
		reportJWT()
		seen++
	}
	emit(event{"event": "done", "rotations": seen})
}

// A black-box Google app in Go: golang.org/x/oauth2/google's Application Default Credentials and
// cloud.google.com/go/compute/metadata, given only the environment it is started with; prints what it got.
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2/google"
)

func main() {
	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) { _ = out.Encode(map[string]any{"ok": false, "error": err.Error()}) }
	project, err := metadata.ProjectIDWithContext(ctx)
	if err != nil {
		fail(err)
		return
	}
	email, err := metadata.EmailWithContext(ctx, "default")
	if err != nil {
		fail(err)
		return
	}
	creds, err := google.FindDefaultCredentials(ctx, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		fail(err)
		return
	}
	token, err := creds.TokenSource.Token()
	if err != nil {
		fail(err)
		return
	}
	_ = out.Encode(map[string]any{"ok": true, "project": project, "adcProject": creds.ProjectID, "email": email, "token": token.AccessToken, "onGCE": metadata.OnGCE()})
}

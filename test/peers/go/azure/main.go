// A black-box Azure app in Go: azidentity's ManagedIdentityCredential (the environment it is started with
// picks the source), a token for the scope on the command line; prints what it got.
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func main() {
	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		_ = out.Encode(map[string]any{"ok": false, "error": err.Error()})
		return
	}
	token, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{os.Args[1]}})
	if err != nil {
		_ = out.Encode(map[string]any{"ok": false, "error": err.Error()})
		return
	}
	_ = out.Encode(map[string]any{"ok": true, "token": token.Token, "expiresOn": token.ExpiresOn.Unix()})
}

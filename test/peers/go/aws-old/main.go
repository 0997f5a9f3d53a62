// A black-box AWS app in Go: aws-sdk-go-v2's default credential chain (only the environment it is given), then
// sts GetCallerIdentity at the endpoint named on the command line (the STS stand-in verifies the signature).
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	endpoint := os.Args[1]
	resolver := aws.EndpointResolverWithOptionsFunc(func(service, region string, _ ...interface{}) (aws.Endpoint, error) {
		if service == sts.ServiceID {
			return aws.Endpoint{URL: endpoint, HostnameImmutable: true, SigningRegion: region}, nil
		}
		return aws.Endpoint{}, &aws.EndpointNotFoundError{}
	})
	cfg, err := config.LoadDefaultConfig(ctx, config.WithEndpointResolverWithOptions(resolver))
	if err != nil {
		_ = out.Encode(map[string]any{"ok": false, "error": err.Error()})
		return
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		_ = out.Encode(map[string]any{"ok": false, "error": err.Error()})
		return
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		_ = out.Encode(map[string]any{"ok": false, "error": err.Error(), "source": creds.Source})
		return
	}
	_ = out.Encode(map[string]any{"ok": true, "arn": aws.ToString(id.Arn), "source": creds.Source})
}

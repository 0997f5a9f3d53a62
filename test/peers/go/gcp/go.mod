module spiffe-connector.test/peers/gcp

go 1.26.0

require (
	cloud.google.com/go/compute/metadata v0.10.0
	golang.org/x/oauth2 v0.38.0
)

require golang.org/x/sys v0.46.0 // indirect

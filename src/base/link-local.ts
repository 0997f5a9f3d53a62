// The link-local addresses the real metadata services answer on, which link-local mode (server.linkLocal)
// puts on the pod's lo and serves at port 80 (README.md "Clients that hard-code the metadata address").

/** EC2 IMDS, the GCE metadata server and Azure IMDS all answer here. */
export const METADATA_IP = '169.254.169.254';
/** The ECS container-credentials endpoint that AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is relative to. */
export const CONTAINER_CREDENTIALS_IP = '169.254.170.2';
/** The name Google's clients use besides METADATA_IP (gcp-metadata adds a trailing dot); hostAliases maps it. */
export const GCE_METADATA_NAME = 'metadata.google.internal';
/** Both addresses, in the order the listener binds them. */
export const LINK_LOCAL_ADDRESSES: readonly string[] = [METADATA_IP, CONTAINER_CREDENTIALS_IP];
/** The port the real services answer on, and the one link-local mode binds. */
export const LINK_LOCAL_PORT = 80;

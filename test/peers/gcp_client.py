# A black-box Google app: google.auth.default() (Application Default Credentials from the environment it
# is given: the GCE metadata server), then a token refresh; prints what it got.
import json

import google.auth
import google.auth.transport.requests
from google.auth import version

try:
    credentials, project = google.auth.default(scopes=['https://www.googleapis.com/auth/cloud-platform'])
    credentials.refresh(google.auth.transport.requests.Request())
    print(json.dumps({
        'ok': True,
        'kind': type(credentials).__module__ + '.' + type(credentials).__name__,
        'project': project,
        'email': getattr(credentials, 'service_account_email', None),
        'token': credentials.token,
        'version': version.__version__,
    }))
except Exception as error:
    print(json.dumps({'ok': False, 'error': f'{type(error).__name__}: {error}', 'version': version.__version__}))

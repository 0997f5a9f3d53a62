// An unmodified app on a host without a metadata server: google-auth-library's Application Default
// Credentials from GOOGLE_APPLICATION_CREDENTIALS alone. Prints one JSON line: the token or the error.
import { GoogleAuth } from 'google-auth-library';

try {
  const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
  const client = await auth.getClient();
  const token = (await client.getAccessToken()).token ?? null;
  process.stdout.write(`${JSON.stringify({ token, type: client.constructor.name })}\n`);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ error: (error as Error).message })}\n`);
}

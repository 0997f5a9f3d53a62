// A black-box AWS app in Java: the AWS SDK for Java v2's default credential chain (only the environment it is
// given), then sts GetCallerIdentity at the endpoint named on the command line (the STS stand-in verifies the
// signature). Prints one JSON line: what it got, or the error.
import java.net.URI;
import software.amazon.awssdk.auth.credentials.AwsCredentials;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.services.sts.StsClient;
import software.amazon.awssdk.services.sts.model.GetCallerIdentityResponse;

public final class Main {
  private static String q(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : String.valueOf(s).toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  public static void main(String[] args) {
    String source = null;
    try (DefaultCredentialsProvider provider = DefaultCredentialsProvider.builder().build()) {
      AwsCredentials creds = provider.resolveCredentials();
      source = creds.providerName().orElse("");
      try (StsClient sts = StsClient.builder().endpointOverride(URI.create(args[0])).credentialsProvider(provider).build()) {
        GetCallerIdentityResponse id = sts.getCallerIdentity();
        System.out.println("{\"ok\":true,\"arn\":" + q(id.arn()) + ",\"source\":" + q(source) + "}");
      }
    } catch (Exception e) {
      System.out.println("{\"ok\":false,\"error\":" + q(e.getClass().getSimpleName() + ": " + e.getMessage()) + (source == null ? "" : ",\"source\":" + q(source)) + "}");
    }
    System.exit(0);
  }
}

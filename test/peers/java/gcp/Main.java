// A black-box Google app in Java: google-auth-library-java's Application Default Credentials (only the
// environment it is given), a token from what ADC found; prints one JSON line: what it got, or the error.
import com.google.auth.oauth2.AccessToken;
import com.google.auth.oauth2.ComputeEngineCredentials;
import com.google.auth.oauth2.GoogleCredentials;

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
    try {
      GoogleCredentials creds = GoogleCredentials.getApplicationDefault();
      AccessToken token = creds.refreshAccessToken();
      String email = creds instanceof ComputeEngineCredentials ? ((ComputeEngineCredentials) creds).getAccount() : "";
      System.out.println("{\"ok\":true,\"kind\":" + q(creds.getClass().getSimpleName()) + ",\"email\":" + q(email) + ",\"token\":" + q(token.getTokenValue()) + "}");
    } catch (Exception e) {
      System.out.println("{\"ok\":false,\"error\":" + q(e.getClass().getSimpleName() + ": " + e.getMessage()) + "}");
    }
    System.exit(0);
  }
}

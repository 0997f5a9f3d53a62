// A black-box Azure app in Java: azure-identity's ManagedIdentityCredential (the environment it is started
// with picks the source), a token for the scope on the command line; prints one JSON line: what it got, or
// the error.
import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenRequestContext;
import com.azure.identity.ManagedIdentityCredential;
import com.azure.identity.ManagedIdentityCredentialBuilder;

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
      ManagedIdentityCredential cred = new ManagedIdentityCredentialBuilder().build();
      AccessToken token = cred.getTokenSync(new TokenRequestContext().addScopes(args[0]));
      System.out.println("{\"ok\":true,\"token\":" + q(token.getToken()) + ",\"expiresOn\":" + token.getExpiresAt().toEpochSecond() + "}");
    } catch (Exception e) {
      System.out.println("{\"ok\":false,\"error\":" + q(e.getClass().getSimpleName() + ": " + e.getMessage()) + "}");
    }
    System.exit(0);
  }
}

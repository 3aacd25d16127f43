// Makes the broker's ACLs those of deploy/kafka-acls.txt (shared/kafka_acls.py writes it):
// adds the missing grants and removes any other grant of the principals the file names.
// Run as a single-file source program on Kafka's own jars (JDK 11+), as the admin principal:
//   KAFKA_ADMIN_PASSWORD=... java -cp "$LIBS/*" KafkaAcls.java 127.0.0.1:9092 deploy/kafka-acls.txt
// (the password comes from the environment, so that it does not show in the process list).
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAcls {
    static String upper(String name) {
        return name.toUpperCase(Locale.ROOT);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: KafkaAcls BOOTSTRAP ACL_FILE (KAFKA_ADMIN_PASSWORD in the environment)");
            System.exit(2);
        }
        String user = System.getenv().getOrDefault("KAFKA_ADMIN_USER", "admin");
        String password = System.getenv("KAFKA_ADMIN_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("KafkaAcls: KAFKA_ADMIN_PASSWORD is not set");
            System.exit(2);
        }
        Set<AclBinding> wanted = new HashSet<>();
        Set<String> principals = new HashSet<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            line = line.strip();
            if (line.isEmpty() || line.startsWith("#")) continue;
            String[] f = line.split("\\s+");  // principal resource-type pattern-type operations name...
            principals.add(f[0]);
            for (int i = 4; i < f.length; i++) {
                ResourcePattern pattern = new ResourcePattern(
                    ResourceType.valueOf(upper(f[1])), f[i], PatternType.valueOf(upper(f[2])));
                for (String op : f[3].split(",")) {
                    wanted.add(new AclBinding(pattern, new AccessControlEntry(
                        f[0], "*", AclOperation.valueOf(upper(op)), AclPermissionType.ALLOW)));
                }
            }
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("security.protocol", "SASL_PLAINTEXT");
        props.put("sasl.mechanism", "SCRAM-SHA-256");
        props.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";");
        try (Admin admin = Admin.create(props)) {
            Collection<AclBinding> existing = admin.describeAcls(AclBindingFilter.ANY).values().get();
            List<AclBindingFilter> stale = new ArrayList<>();
            for (AclBinding b : existing) {
                if (principals.contains(b.entry().principal()) && !wanted.contains(b)) stale.add(b.toFilter());
            }
            List<AclBinding> missing = new ArrayList<>();
            for (AclBinding b : wanted) {
                if (!existing.contains(b)) missing.add(b);
            }
            if (!stale.isEmpty()) admin.deleteAcls(stale).all().get();
            if (!missing.isEmpty()) admin.createAcls(missing).all().get();
            System.out.printf("kafka ACLs: %d wanted, %d added, %d removed%n", wanted.size(), missing.size(), stale.size());
        }
    }
}

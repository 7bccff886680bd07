// Creates Kafka ACLs with Kafka's own admin client: tests/secure_broker.py compiles it against
// the local stack's jars and runs it (aiokafka has no ACL request that Kafka 4 still accepts).
//
//   java -cp 'libs/*:DIR' KafkaAcls CLIENT_PROPERTIES PRINCIPAL,OPERATION,RESOURCE_TYPE,PATTERN_TYPE,NAME ...
//
// e.g. `User:intake,WRITE,TOPIC,LITERAL,survey.responses.v1`. Exit status 0 once all exist.
import java.io.FileInputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAcls {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            properties.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] field = args[i].split(",", 5);
            ResourcePattern resource = new ResourcePattern(
                ResourceType.valueOf(field[2]), field[4], PatternType.valueOf(field[3]));
            AccessControlEntry entry = new AccessControlEntry(
                field[0], "*", AclOperation.valueOf(field[1]), AclPermissionType.ALLOW);
            bindings.add(new AclBinding(resource, entry));
        }
        try (Admin admin = Admin.create(properties)) {
            admin.createAcls(bindings).all().get();
        }
    }
}

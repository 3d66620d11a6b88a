import Foundation
import Glibc
import InfraSightTestSupport
import Testing

// MARK: - Rendering deploy/kubernetes offline (reusable)

/// The Kubernetes manifests under deploy/kubernetes, rendered offline with `kubectl
/// kustomize` and read back as Swift values. Rendering works on a copy of the tree with
/// placeholder files for every Secret the overlays generate (the real ones are the
/// user's, kept out of git), so it needs nothing but kubectl and the validator's venv
/// (`deploy/setup-tools.sh`, which `scripts/setup.sh` runs).
enum Manifests {
    /// The overlays a user applies.
    static let overlays = ["in-cluster", "agents-only"]
    /// The optional components of overlays/in-cluster.
    static let components = ["server-tls", "external-clickhouse"]
    /// The venv with kubernetes-validate and PyYAML (deploy/setup-tools.sh).
    static var venv: String { "\(Paths.packageRoot)/.venv-k8s" }
    static let kubernetesVersion = "1.30.0"

    /// Placeholder contents of the files the overlays' secretGenerators read.
    static let placeholderSecrets = [
        "token": "placeholder-token-for-rendering\n",
        "ca.pem": "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n",
        "tls.crt": "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n",
        "tls.key": "-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n",
        "clickhouse-url": "http://default:placeholder@clickhouse.example:8123/\n",
    ]

    /// A copy of deploy/kubernetes in a new temporary directory, with the placeholder
    /// secret files in every overlay's secret/ directory. Returns the copy's root (edit
    /// files there, then `render(root:overlay:)`).
    static func copy() throws -> String {
        let dir = try makeTempDir(prefix: "manifests")
        let r = try run("/bin/cp", ["-a", "\(Paths.packageRoot)/deploy/kubernetes", "\(dir)/kubernetes"])
        guard r.status == 0 else { throw TestFailure("cp: \(r.stderr)") }
        let root = "\(dir)/kubernetes"
        for overlay in overlays {
            for (name, text) in placeholderSecrets {
                try text.write(toFile: "\(root)/overlays/\(overlay)/secret/\(name)", atomically: true, encoding: .utf8)
            }
        }
        return root
    }

    /// Turns `components` on in the copy's overlays/in-cluster (its components: list and
    /// the Secret's files for them), as docs/kubernetes.md tells a user to.
    static func enable(components: [String], in root: String) throws {
        let path = "\(root)/overlays/in-cluster/kustomization.yaml"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        guard text.contains("components: []") else { throw TestFailure("overlays/in-cluster has no 'components: []' line") }
        text = text.replacingOccurrences(of: "components: []", with: "components:\n" + components.map { "  - ../../components/\($0)\n" }.joined())
        var lines: [String] = []
        if components.contains("server-tls") { lines += ["secret/tls.crt", "secret/tls.key", "secret/ca.pem"] }
        if components.contains("external-clickhouse") { lines += ["clickhouse-url=secret/clickhouse-url"] }
        for line in lines {
            guard text.contains("# - \(line)\n") else { throw TestFailure("overlays/in-cluster has no commented '- \(line)'") }
            text = text.replacingOccurrences(of: "# - \(line)\n", with: "- \(line)\n")
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// `kubectl kustomize` of `root`/overlays/`overlay`: the YAML text.
    static func renderYAML(root: String, overlay: String) throws -> String {
        let r = try run(try kubectl(), ["kustomize", "\(root)/overlays/\(overlay)"])
        guard r.status == 0 else { throw TestFailure("kubectl kustomize overlays/\(overlay) failed: \(r.stderr)") }
        return r.stdout
    }

    /// Renders an overlay (with in-cluster's optional `components`) from a fresh copy.
    static func render(_ overlay: String, components: [String] = []) throws -> RenderedManifests {
        let root = try copy()
        try enable(components: components, in: root)
        return try render(root: root, overlay: overlay)
    }

    /// Renders `root`/overlays/`overlay` (a tree from `copy()`).
    static func render(root: String, overlay: String) throws -> RenderedManifests {
        let yaml = try renderYAML(root: root, overlay: overlay)
        let file = "\((root as NSString).deletingLastPathComponent)/\(overlay)-\(UUID().uuidString).yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        return RenderedManifests(yamlPath: file, objects: try yamlDocuments(file).map(K8sResource.init))
    }

    /// Every document of a YAML file as JSON objects (PyYAML from the venv: the test
    /// target has no YAML parser of its own).
    static func yamlDocuments(_ path: String) throws -> [[String: Any]] {
        let script = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)"
        let r = try run(try venvTool("python"), ["-c", script, path])
        guard r.status == 0, let array = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any] else {
            throw TestFailure("cannot read YAML \(path): \(r.stderr)")
        }
        return try array.map { element in
            guard let object = element as? [String: Any] else { throw TestFailure("\(path): a document is not a mapping") }
            return object
        }
    }

    /// `kubernetes-validate --strict` against `kubernetesVersion`: nil when every object
    /// passes, else its report.
    static func validate(_ yamlPath: String) throws -> String? {
        let r = try run(try venvTool("kubernetes-validate"), ["-k", kubernetesVersion, "--strict", "--quiet", yamlPath])
        return r.status == 0 ? nil : r.stdout + r.stderr
    }

    /// A program of the venv; a missing venv fails the test (it is part of the setup).
    static func venvTool(_ name: String) throws -> String {
        let path = "\(venv)/bin/\(name)"
        guard access(path, X_OK) == 0 else {
            throw TestFailure("\(path) is missing: run deploy/setup-tools.sh (scripts/setup.sh runs it)")
        }
        return path
    }

    static func kubectl() throws -> String {
        try which("kubectl") ?? { throw TestFailure("kubectl is not installed (needed for kubectl kustomize; see deploy/setup-tools.sh)") }()
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
            .map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}

/// The objects of one rendered overlay.
struct RenderedManifests {
    /// The rendered YAML, as `kubectl apply -k` would send it.
    let yamlPath: String
    let objects: [K8sResource]

    func all(_ kind: String) -> [K8sResource] { objects.filter { $0.kind == kind } }

    func object(_ kind: String, _ name: String) throws -> K8sResource {
        try #require(objects.first { $0.kind == kind && $0.name == name }, "no \(kind) \(name) in \(objects.map { "\($0.kind)/\($0.name)" })")
    }

    /// The agent DaemonSet's pod spec.
    func agentPod() throws -> K8sPodSpec { try object("DaemonSet", "infrasight-agent").decode(K8sWorkload.self).spec.template.spec }
    /// The agent container: image, command, args, env, volume mounts, security context.
    func agentContainer() throws -> K8sContainer { try #require(try agentPod().containers.first { $0.name == "agent" }) }
    /// The server StatefulSet (in-cluster only).
    func serverWorkload() throws -> K8sWorkload { try object("StatefulSet", "infrasight-server").decode(K8sWorkload.self) }
    func serverContainer() throws -> K8sContainer { try #require(try serverWorkload().spec.template.spec.containers.first { $0.name == "server" }) }

    /// The generated ConfigMap the agents read (infrasight-config-<hash>).
    func agentConfigMap() throws -> K8sResource {
        try #require(all("ConfigMap").first { $0.name.hasPrefix("infrasight-config-") })
    }
    /// The agents' infrasight.yaml, as the agent will read it.
    func agentConfigText() throws -> String {
        try #require(try agentConfigMap().stringData["infrasight.yaml"])
    }
    /// The generated Secret (infrasight-secret-<hash>), its files decoded.
    func secret() throws -> (name: String, files: [String: String]) {
        let s = try #require(all("Secret").first { $0.name.hasPrefix("infrasight-secret-") })
        return (s.name, s.base64Data)
    }

    /// The container's environment as the kubelet would set it on node `nodeName`:
    /// plain values, `spec.nodeName`, and keys of the rendered Secrets and ConfigMaps
    /// (a missing optional key is left out, as Kubernetes does).
    func environment(of container: K8sContainer, nodeName: String) throws -> [String: String] {
        var env: [String: String] = [:]
        for variable in container.env ?? [] {
            if let value = variable.value {
                env[variable.name] = value
            } else if let field = variable.valueFrom?.fieldRef {
                guard field.fieldPath == "spec.nodeName" else { throw TestFailure("\(variable.name): fieldRef \(field.fieldPath) is not simulated") }
                env[variable.name] = nodeName
            } else if let ref = variable.valueFrom?.secretKeyRef ?? variable.valueFrom?.configMapKeyRef {
                let source = try #require(objects.first { ["Secret", "ConfigMap"].contains($0.kind) && $0.name == ref.name }, "\(variable.name): no \(ref.name)")
                let data = source.kind == "Secret" ? source.base64Data : source.stringData
                if let value = data[ref.key] {
                    env[variable.name] = value
                } else if ref.optional != true {
                    throw TestFailure("\(variable.name): \(ref.name) has no key \(ref.key)")
                }
            }
        }
        return env
    }

    /// Writes a ConfigMap or Secret volume's files into `dir` as the kubelet would (a
    /// Secret's with the volume's defaultMode, a ConfigMap's 0644), so a container run
    /// can mount `dir` where the pod mounts the volume.
    func writeFiles(of volume: K8sVolume, into dir: String) throws {
        let (object, mode): (K8sResource?, Int)
        if let secret = volume.secret {
            (object, mode) = (objects.first { $0.kind == "Secret" && $0.name == secret.secretName }, secret.defaultMode ?? 0o644)
        } else if let configMap = volume.configMap {
            (object, mode) = (objects.first { $0.kind == "ConfigMap" && $0.name == configMap.name }, configMap.defaultMode ?? 0o644)
        } else {
            throw TestFailure("volume \(volume.name) is neither a Secret nor a ConfigMap")
        }
        let source = try #require(object, "volume \(volume.name): its object is not in the rendering")
        for (name, text) in source.kind == "Secret" ? source.base64Data : source.stringData {
            let path = "\(dir)/\(name)"
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            guard chmod(path, mode_t(mode)) == 0 else { throw TestFailure("chmod \(path): \(String(cString: strerror(errno)))") }
        }
    }
}

/// One rendered object: its JSON, kind and name; `decode` reads it as a typed value.
struct K8sResource {
    let json: [String: Any]
    var kind: String { json["kind"] as? String ?? "" }
    var metadata: [String: Any] { json["metadata"] as? [String: Any] ?? [:] }
    var name: String { metadata["name"] as? String ?? "" }
    var namespace: String? { metadata["namespace"] as? String }
    /// A ConfigMap's data.
    var stringData: [String: String] { json["data"] as? [String: String] ?? [:] }
    /// A Secret's data, base64-decoded.
    var base64Data: [String: String] {
        (json["data"] as? [String: String] ?? [:]).compactMapValues { Data(base64Encoded: $0, options: .ignoreUnknownCharacters).map { String(decoding: $0, as: UTF8.self) } }
    }

    init(_ json: [String: Any]) { self.json = json }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: JSONSerialization.data(withJSONObject: json))
    }
}

// The parts of the Kubernetes API the tests (and a test that runs these specs as
// containers) read; unknown fields are ignored.
struct K8sWorkload: Decodable {
    struct Spec: Decodable {
        struct Template: Decodable {
            let metadata: K8sMeta
            let spec: K8sPodSpec
        }
        struct UpdateStrategy: Decodable {
            struct Rolling: Decodable { let maxUnavailable: K8sIntOrString?; let maxSurge: K8sIntOrString? }
            let type: String?
            let rollingUpdate: Rolling?
        }
        struct ClaimTemplate: Decodable {
            struct ClaimSpec: Decodable {
                struct Resources: Decodable { let requests: [String: String]? }
                let accessModes: [String]?
                let resources: Resources?
            }
            let metadata: K8sMeta
            let spec: ClaimSpec
        }
        let replicas: Int?
        let serviceName: String?
        let template: Template
        let updateStrategy: UpdateStrategy?
        let volumeClaimTemplates: [ClaimTemplate]?
    }
    let metadata: K8sMeta
    let spec: Spec
}

struct K8sMeta: Decodable {
    let name: String?
    let labels: [String: String]?
    let annotations: [String: String]?
}

struct K8sPodSpec: Decodable {
    struct Toleration: Decodable, Equatable { let key: String?; let `operator`: String?; let effect: String? }
    struct SecurityContext: Decodable {
        let runAsUser: Int?
        let runAsGroup: Int?
        let runAsNonRoot: Bool?
        let fsGroup: Int?
        let fsGroupChangePolicy: String?
        let seccompProfile: K8sSecurityContext.Seccomp?
    }
    let hostPID: Bool?
    let hostNetwork: Bool?
    let serviceAccountName: String?
    let automountServiceAccountToken: Bool?
    let terminationGracePeriodSeconds: Int?
    let tolerations: [Toleration]?
    let securityContext: SecurityContext?
    let containers: [K8sContainer]
    let initContainers: [K8sContainer]?
    let volumes: [K8sVolume]?

    func volume(_ name: String) -> K8sVolume? { volumes?.first { $0.name == name } }
}

struct K8sContainer: Decodable {
    struct EnvVar: Decodable {
        struct Source: Decodable {
            struct FieldRef: Decodable { let fieldPath: String }
            struct KeyRef: Decodable { let name: String; let key: String; let optional: Bool? }
            let fieldRef: FieldRef?
            let secretKeyRef: KeyRef?
            let configMapKeyRef: KeyRef?
        }
        let name: String
        let value: String?
        let valueFrom: Source?
    }
    struct Port: Decodable { let name: String?; let containerPort: Int; let `protocol`: String? }
    struct Mount: Decodable {
        let name: String
        let mountPath: String
        let readOnly: Bool?
        let subPath: String?
        let recursiveReadOnly: String?
        let mountPropagation: String?
    }
    struct Probe: Decodable {
        struct HTTPGet: Decodable { let path: String?; let port: K8sIntOrString }
        let httpGet: HTTPGet?
        let periodSeconds: Int?
        let failureThreshold: Int?
    }
    struct Resources: Decodable { let requests: [String: String]?; let limits: [String: String]? }
    let name: String
    let image: String
    let imagePullPolicy: String?
    let command: [String]?
    let args: [String]?
    let env: [EnvVar]?
    let ports: [Port]?
    let volumeMounts: [Mount]?
    let securityContext: K8sSecurityContext?
    let livenessProbe: Probe?
    let readinessProbe: Probe?
    let startupProbe: Probe?
    let resources: Resources?

    func mount(at path: String) -> Mount? { volumeMounts?.first { $0.mountPath == path } }
    func env(_ name: String) -> EnvVar? { env?.first { $0.name == name } }
    /// The value after `flag` in command + args (`--flag value` or `--flag=value`).
    func flag(_ flag: String) -> String? {
        let all = (command ?? []) + (args ?? [])
        if let i = all.firstIndex(of: flag), i + 1 < all.count { return all[i + 1] }
        return all.first { $0.hasPrefix(flag + "=") }.map { String($0.dropFirst(flag.count + 1)) }
    }
    /// The port number a probe's or a name's port means.
    func portNumber(_ port: K8sIntOrString) -> Int? {
        switch port {
        case .int(let n): return n
        case .string(let name): return ports?.first { $0.name == name }?.containerPort
        }
    }
}

struct K8sSecurityContext: Decodable {
    struct Capabilities: Decodable { let add: [String]?; let drop: [String]? }
    struct Seccomp: Decodable { let type: String }
    let runAsUser: Int?
    let runAsGroup: Int?
    let runAsNonRoot: Bool?
    let privileged: Bool?
    let allowPrivilegeEscalation: Bool?
    let readOnlyRootFilesystem: Bool?
    let capabilities: Capabilities?
    let seccompProfile: Seccomp?
}

struct K8sVolume: Decodable {
    struct HostPath: Decodable { let path: String; let type: String? }
    struct ConfigMap: Decodable { let name: String; let defaultMode: Int? }
    struct Secret: Decodable { let secretName: String; let defaultMode: Int? }
    struct EmptyDir: Decodable { let medium: String?; let sizeLimit: String? }
    let name: String
    let hostPath: HostPath?
    let configMap: ConfigMap?
    let secret: Secret?
    let emptyDir: EmptyDir?
}

enum K8sIntOrString: Decodable, Equatable {
    case int(Int)
    case string(String)
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .int(n) } else { self = .string(try c.decode(String.self)) }
    }
}

// MARK: - Tests

/// deploy/: the Kubernetes overlays render and validate offline and say what the design
/// says (hostPID, the host root read-only, the spool on the node, probes, a config hash
/// that rolls the agents, a non-root server on a volume claim); scripts/install.sh lays
/// out a tree the program accepts; the systemd units verify.
@Suite struct ManifestTests {
    /// Every overlay, and in-cluster with each optional component and with both.
    static let renderings: [(overlay: String, components: [String])] =
        Manifests.overlays.map { ($0, []) } + Manifests.components.map { ("in-cluster", [$0]) } + [("in-cluster", Manifests.components)]

    @Test(arguments: 0..<renderings.count)
    func everyOverlayRendersAndValidatesAgainstTheKubernetesSchemas(_ index: Int) throws {
        let (overlay, components) = Self.renderings[index]
        let rendered = try Manifests.render(overlay, components: components)
        #expect(try Manifests.validate(rendered.yamlPath) == nil, "overlay \(overlay) + \(components)")
        for object in rendered.objects where object.kind != "Namespace" {
            #expect(object.namespace == "infrasight", "\(object.kind)/\(object.name)")
        }
        #expect(rendered.all("Namespace").map(\.name) == ["infrasight"])
        // Nothing anywhere runs privileged.
        #expect(!rendered.objects.contains { Self.containsTrue($0.json, key: "privileged") })
        // The images are the ones imported into containerd, tagged, never pulled.
        let pods = try rendered.all("DaemonSet").map { try $0.decode(K8sWorkload.self) } + rendered.all("StatefulSet").map { try $0.decode(K8sWorkload.self) }
        for container in pods.flatMap({ $0.spec.template.spec.containers + ($0.spec.template.spec.initContainers ?? []) }) {
            #expect(["infrasight:0.2.0", "infrasight-server:0.2.0"].contains(container.image), "\(container.name): \(container.image)")
            #expect(container.imagePullPolicy == "IfNotPresent")
            #expect(container.securityContext?.capabilities?.drop == ["ALL"], "\(container.name)")
        }
    }

    /// The validator really checks: an unknown field fails (strict), so a pass means something.
    @Test func theValidatorRefusesAnUnknownField() throws {
        let rendered = try Manifests.render("agents-only")
        let text = try String(contentsOfFile: rendered.yamlPath, encoding: .utf8)
        let bad = rendered.yamlPath + ".bad.yaml"
        try text.replacingOccurrences(of: "hostPID: true", with: "hostPID: true\n      hostPIDs: true").write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(try Manifests.validate(bad)?.contains("hostPIDs") == true)
    }

    @Test(arguments: Manifests.overlays)
    func theAgentDaemonSetTracesTheNodeWithLeastPrivilege(_ overlay: String) throws {
        let rendered = try Manifests.render(overlay)
        let daemonSet = try rendered.object("DaemonSet", "infrasight-agent").decode(K8sWorkload.self)
        let pod = daemonSet.spec.template.spec
        let agent = try rendered.agentContainer()

        #expect(pod.hostPID == true)
        #expect(pod.hostNetwork != true)
        #expect(pod.automountServiceAccountToken == false)
        #expect(pod.tolerations == [K8sPodSpec.Toleration(key: nil, operator: "Exists", effect: nil)])
        #expect(agent.command == ["/usr/bin/infrasight"])
        #expect(agent.args?.first == "agent")
        #expect(agent.flag("--config") == "/etc/infrasight/infrasight.yaml")

        // NODE_NAME from the downward API.
        #expect(agent.env("NODE_NAME")?.valueFrom?.fieldRef?.fieldPath == "spec.nodeName")
        #expect(try rendered.environment(of: agent, nodeName: "node-7") == ["NODE_NAME": "node-7"])

        // The host's root, read-only, at /host, and host_root: /host in the config.
        let host = try #require(agent.mount(at: "/host"))
        #expect(host.readOnly == true)
        #expect(pod.volume(host.name)?.hostPath?.path == "/")
        let config = try rendered.agentConfigText()
        #expect(config.contains("\nhost_root: /host\n"))
        // The other host paths: tracefs, BTF, cgroups (under host_root), containerd.
        for (path, hostPath, readOnly) in [("/sys/kernel/tracing", "/sys/kernel/tracing", true), ("/sys/kernel/btf", "/sys/kernel/btf", true),
                                           ("/host/sys/fs/cgroup", "/sys/fs/cgroup", true),
                                           ("/host/run/containerd/containerd.sock", "/run/containerd/containerd.sock", false)] {
            let m = try #require(agent.mount(at: path), "no mount at \(path)")
            #expect(pod.volume(m.name)?.hostPath?.path == hostPath, "\(path)")
            #expect((m.readOnly ?? false) == readOnly, "\(path)")
        }

        // The spool on the node, where --spool-dir points.
        let spoolDir = try #require(agent.flag("--spool-dir"))
        let spool = try #require(agent.mount(at: spoolDir))
        #expect(spool.readOnly != true)
        #expect(pod.volume(spool.name)?.hostPath?.path == "/var/lib/infrasight/spool")
        #expect(pod.volume(spool.name)?.hostPath?.type == "DirectoryOrCreate")

        // Probes on the metrics port, which --metrics-listen serves and Prometheus scrapes.
        #expect(agent.flag("--metrics-listen") == "0.0.0.0:9464")
        for (probe, path) in [(agent.livenessProbe, "/healthz"), (agent.readinessProbe, "/readyz"), (agent.startupProbe, "/healthz")] {
            let get = try #require(probe?.httpGet)
            #expect(get.path == path)
            #expect(agent.portNumber(get.port) == 9464)
        }
        let annotations = daemonSet.spec.template.metadata.annotations ?? [:]
        #expect(annotations["prometheus.io/scrape"] == "true")
        #expect(annotations["prometheus.io/port"] == "9464")
        #expect(annotations["prometheus.io/path"] == "/metrics")

        // Measured figures: requests, a memory limit, no CPU limit.
        #expect(agent.resources?.requests == ["cpu": "100m", "memory": "128Mi"])
        #expect(agent.resources?.limits == ["memory": "256Mi"])

        // Rolling, one node at a time, and time for the drain on SIGTERM.
        #expect(daemonSet.spec.updateStrategy?.type == "RollingUpdate")
        #expect(daemonSet.spec.updateStrategy?.rollingUpdate?.maxUnavailable == .int(1))
        #expect(daemonSet.spec.updateStrategy?.rollingUpdate?.maxSurge == .int(0))
        let drain = try #require(agent.flag("--drain-timeout").flatMap(Int.init))
        #expect((pod.terminationGracePeriodSeconds ?? 30) >= drain + 20)

        // Root but not privileged: the capabilities tracing needs, nothing else.
        let security = try #require(agent.securityContext)
        #expect(security.privileged == false)
        #expect(security.runAsUser == 0)
        #expect(security.allowPrivilegeEscalation == false)
        #expect(security.readOnlyRootFilesystem == true)
        #expect(security.capabilities?.drop == ["ALL"])
        #expect(Set(security.capabilities?.add ?? []) == ["BPF", "PERFMON", "DAC_READ_SEARCH"])
        #expect(security.seccompProfile?.type == "RuntimeDefault")

        // The config file: the generated ConfigMap, mounted as a file (its directory
        // would be 0777) at the path the agent reads.
        let configMount = try #require(agent.mount(at: "/etc/infrasight/infrasight.yaml"))
        #expect(configMount.subPath == "infrasight.yaml")
        #expect(pod.volume(configMount.name)?.configMap?.name == (try rendered.agentConfigMap().name))

        // The token: the generated Secret, files 0400, where --token-file points.
        let tokenFile = try #require(agent.flag("--token-file"))
        let secretMount = try #require(agent.mount(at: (tokenFile as NSString).deletingLastPathComponent))
        let secretVolume = try #require(pod.volume(secretMount.name)?.secret)
        let secret = try rendered.secret()
        #expect(secretVolume.secretName == secret.name)
        #expect(secretVolume.defaultMode == 0o400)
        #expect(secret.files["token"] == Manifests.placeholderSecrets["token"])

        // The files as a container run would mount them: the token 0400, the config the
        // program accepts from there.
        let files = try makeTempDir(prefix: "pod-files")
        defer { _ = try? run("/bin/rm", ["-rf", files]) }
        try rendered.writeFiles(of: try #require(pod.volume(secretMount.name)), into: files)
        var st = stat()
        #expect(stat("\(files)/token", &st) == 0 && st.st_mode & 0o777 == 0o400)
        try rendered.writeFiles(of: try #require(pod.volume(configMount.name)), into: files)
        let check = try run(Paths.infrasight, ["plugins", "list", "--json", "--config", "\(files)/infrasight.yaml"])
        #expect(check.status == 0, "\(check.stderr)")
    }

    /// Item 3: a changed infrasight.yaml is a new ConfigMap name, so a changed pod
    /// template, so a rolling update of the agents (and only of them).
    @Test func aConfigChangeRollsTheAgentsAndOnlyThem() throws {
        let root = try Manifests.copy()
        let before = try Manifests.render(root: root, overlay: "in-cluster")
        let configMap = try before.agentConfigMap().name
        #expect(configMap.range(of: "^infrasight-config-[a-z0-9]{10}$", options: .regularExpression) != nil, "\(configMap)")

        let path = "\(root)/base/infrasight.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let enabled = "  enabled: [tracing, network, ptrace, mount]"
        #expect(text.contains(enabled + " "))
        try text.replacingOccurrences(of: enabled, with: "  enabled: [tracing, network, ptrace, mount, mmap]").write(toFile: path, atomically: true, encoding: .utf8)
        let after = try Manifests.render(root: root, overlay: "in-cluster")

        let newName = try after.agentConfigMap().name
        #expect(newName != configMap)
        #expect(try after.agentConfigText().contains("mmap]"))
        let volume = try #require(try after.agentPod().volumes?.first { $0.configMap != nil })
        #expect(volume.configMap?.name == newName)
        #expect(try Self.template(before, "DaemonSet", "infrasight-agent") != Self.template(after, "DaemonSet", "infrasight-agent"))
        #expect(try Self.template(before, "StatefulSet", "infrasight-server") == Self.template(after, "StatefulSet", "infrasight-server"))
    }

    @Test func theServerRunsAsNonRootOnAVolumeClaimBehindTheServiceTheAgentsDial() throws {
        let rendered = try Manifests.render("in-cluster")
        let server = try rendered.serverWorkload()
        let pod = server.spec.template.spec
        let container = try rendered.serverContainer()
        #expect(server.spec.replicas == 1)
        #expect(container.command == ["/usr/bin/infrasight"])
        #expect(container.args?.first == "server")

        // Non-root, nothing added, nothing writable but its volumes.
        #expect(pod.securityContext?.runAsUser == 65532)
        #expect(pod.securityContext?.runAsNonRoot == true)
        #expect(pod.securityContext?.fsGroup == 65532)
        #expect(pod.securityContext?.seccompProfile?.type == "RuntimeDefault")
        let security = try #require(container.securityContext)
        #expect(security.capabilities?.drop == ["ALL"])
        #expect(security.capabilities?.add == nil)
        #expect(security.allowPrivilegeEscalation == false)
        #expect(security.readOnlyRootFilesystem == true)
        #expect(security.runAsUser == nil || security.runAsUser == 65532)

        // The embedded store on the claim: --data-dir inside the mounted volume.
        let claim = try #require(server.spec.volumeClaimTemplates?.first)
        let dataMount = try #require(container.volumeMounts?.first { $0.name == claim.metadata.name })
        let dataDir = try #require(container.flag("--data-dir"))
        #expect(dataDir.hasPrefix(dataMount.mountPath + "/"))
        #expect(claim.spec.accessModes == ["ReadWriteOnce"])

        // Beyond loopback with a token (the server refuses plaintext without one).
        #expect(container.flag("--listen") == "0.0.0.0:50051")
        let token = try #require(container.env("INFRASIGHT_TOKEN")?.valueFrom?.secretKeyRef)
        #expect(token.name == (try rendered.secret().name))
        #expect(token.key == "token")
        #expect(try rendered.environment(of: container, nodeName: "node-1") == ["INFRASIGHT_TOKEN": Manifests.placeholderSecrets["token"]!])
        #expect(container.flag("--metrics-listen") == "0.0.0.0:9465")
        #expect(container.portNumber(try #require(container.readinessProbe?.httpGet?.port)) == 9465)
        #expect(container.readinessProbe?.httpGet?.path == "/readyz")
        #expect(container.livenessProbe?.httpGet?.path == "/healthz")

        // The Service the agents' config names selects this pod and forwards 50051.
        let service = try rendered.object("Service", "infrasight-server")
        let spec = try #require(service.json["spec"] as? [String: Any])
        let selector = try #require(spec["selector"] as? [String: String])
        let labels = server.spec.template.metadata.labels ?? [:]
        #expect(selector.allSatisfy { labels[$0.key] == $0.value })
        let ports = (spec["ports"] as? [[String: Any]] ?? []).compactMap { $0["port"] as? Int }
        #expect(ports.contains(50051))
        #expect(try rendered.agentConfigText().contains("\n  server: \(service.name).\(service.namespace ?? "").svc:50051\n"))
        #expect(server.spec.serviceName.map { name in rendered.objects.contains { $0.kind == "Service" && $0.name == name } } == true)
    }

    @Test func theServerComponentsAddTLSAndAnExternalClickHouse() throws {
        let tls = try Manifests.render("in-cluster", components: ["server-tls"])
        let server = try tls.serverContainer()
        #expect(server.flag("--tls-cert") == "/etc/infrasight/secret/tls.crt")
        let key = try #require(server.flag("--tls-key"))
        // The key is copied out of the Secret volume (0440 under fsGroup) as 0400.
        let copier = try #require(try tls.serverWorkload().spec.template.spec.initContainers?.first)
        #expect(copier.command?.contains(key) == true)
        #expect(copier.command?.contains("0400") == true)
        #expect(try tls.agentContainer().flag("--tls-ca") == "/etc/infrasight/secret/ca.pem")
        #expect(Set(try tls.secret().files.keys) == ["token", "tls.crt", "tls.key", "ca.pem"])

        let external = try Manifests.render("in-cluster", components: ["external-clickhouse"])
        let http = try external.serverContainer()
        #expect(http.flag("--data-dir") == nil)
        #expect(http.env("INFRASIGHT_CLICKHOUSE_URL")?.valueFrom?.secretKeyRef?.key == "clickhouse-url")
        #expect(try external.serverWorkload().spec.volumeClaimTemplates == nil)
        #expect(try external.secret().files["clickhouse-url"] != nil)
    }

    @Test func agentsOnlyHasNoServerAndVerifiesTheCentralOne() throws {
        let rendered = try Manifests.render("agents-only")
        #expect(rendered.all("StatefulSet").isEmpty)
        #expect(rendered.all("Service").isEmpty)
        let config = try rendered.agentConfigText()
        #expect(config.contains("\n  server: infrasight.example.com:50051\n"))
        #expect(config.contains("\n  tls_ca: /etc/infrasight/secret/ca.pem\n"))
        #expect(Set(try rendered.secret().files.keys) == ["token", "ca.pem"])
        let agent = try rendered.agentContainer()
        #expect(agent.mount(at: "/etc/infrasight/secret") != nil)
    }

    /// overlays/agents-only/infrasight.yaml is base/infrasight.yaml but for the server it
    /// names: a plugin enabled in one is enabled in the other.
    @Test func theAgentsOnlyConfigDiffersFromTheBaseOnlyInTheServer() throws {
        let base = try Self.yaml("deploy/kubernetes/base/infrasight.yaml")
        let agentsOnly = try Self.yaml("deploy/kubernetes/overlays/agents-only/infrasight.yaml")
        func withoutServer(_ config: [String: Any]) -> NSDictionary {
            var c = config
            var agent = c["agent"] as? [String: Any] ?? [:]
            agent["server"] = nil
            agent["tls_ca"] = nil
            c["agent"] = agent
            return c as NSDictionary
        }
        #expect(withoutServer(base) == withoutServer(agentsOnly))
    }

    /// Every config file deploy/ ships is one the program accepts (an unknown key would
    /// stop the agent with status 2 on every node).
    @Test(arguments: ["deploy/kubernetes/base/infrasight.yaml", "deploy/kubernetes/overlays/agents-only/infrasight.yaml", "deploy/infrasight.yaml"])
    func theShippedConfigFilesParse(_ file: String) throws {
        let r = try run(Paths.infrasight, ["plugins", "list", "--json", "--config", "\(Paths.packageRoot)/\(file)"])
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// scripts/install.sh into a staging root, then the installed program itself: it
    /// loads the installed plugins (their owner and modes pass its checks), finds the
    /// bundled Swift runtime and runs the installed embedded ClickHouse.
    @Test func installLaysOutATreeTheProgramAccepts() throws {
        let root = try Self.install()
        defer { _ = try? run("/bin/rm", ["-rf", root]) }
        let bin = "\(root)/usr/bin/infrasight"
        for path in [bin, "\(root)/usr/lib/infrasight", "\(root)/usr/lib/infrasight/plugins", "\(root)/etc/infrasight/infrasight.yaml",
                     "\(root)/usr/lib/infrasight/chdb/_chdb.abi3.so"] + (try Self.files(in: "\(root)/usr/lib/infrasight/plugins")) {
            var st = stat()
            #expect(stat(path, &st) == 0, "\(path)")
            #expect(st.st_uid == 0, "\(path)")
            #expect(st.st_mode & (S_IWGRP | S_IWOTH) == 0, "\(path)")
        }
        let ldd = try run("/usr/bin/ldd", [bin])
        #expect(!ldd.stdout.contains("not found"), "\(ldd.stdout)")
        #expect(!ldd.stdout.contains("/opt/swift"), "the Swift runtime must come from /usr/lib/infrasight/swift: \(ldd.stdout)")

        let list = try run(bin, ["plugins", "list", "--json", "--config", "\(root)/etc/infrasight/infrasight.yaml", "--plugin-dir", "\(root)/usr/lib/infrasight/plugins"])
        #expect(list.status == 0, "\(list.stderr)")
        let plugins = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(Set(plugins.compactMap { $0["name"] as? String }) == ["tracing", "network", "ptrace", "mmap", "mount", "resource"])
        #expect(plugins.allSatisfy { ($0["status"] as? String) != "error" }, "\(plugins)")

        let data = try makeTempDir(prefix: "installed-chdb")
        defer { _ = try? run("/bin/rm", ["-rf", data]) }
        let query = try run(bin, ["query", "--data-dir", "\(data)/d", "SELECT 40 + 2"],
                            environment: ["INFRASIGHT_CHDB_LIBRARY": "\(root)/usr/lib/infrasight/chdb/_chdb.abi3.so"])
        #expect(query.status == 0, "\(query.stderr)")
        #expect(query.stdout == "42\n")

        // A second install keeps the administrator's config.
        try "plugins:\n  enabled: [tracing]\n".write(toFile: "\(root)/etc/infrasight/infrasight.yaml", atomically: true, encoding: .utf8)
        let again = try run("\(Paths.packageRoot)/scripts/install.sh", ["--build-dir", Paths.binDir, "--bundle-swift-runtime"], environment: ["DESTDIR": root])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try String(contentsOfFile: "\(root)/etc/infrasight/infrasight.yaml", encoding: .utf8) == "plugins:\n  enabled: [tracing]\n")
    }

    /// `systemd-analyze verify` on each unit as installed, with the program in place and
    /// this system's own units beside them (no running systemd is needed). A warning
    /// (an unknown key, say) fails too.
    @Test(arguments: ["infrasight-run.service", "infrasight-agent.service", "infrasight-server.service"])
    func theSystemdUnitsVerify(_ unit: String) throws {
        let root = try Self.install(chdb: false)
        defer { _ = try? run("/bin/rm", ["-rf", root]) }
        let systemUnits = ["/usr/lib/systemd/system", "/lib/systemd/system"].first { FileManager.default.fileExists(atPath: "\($0)/sysinit.target") }
        let cp = try run("/bin/cp", ["-an", "\(try #require(systemUnits, "no systemd units on this machine (apt-get install systemd)"))/.", "\(root)/usr/lib/systemd/system/"])
        #expect(cp.status == 0, "\(cp.stderr)")
        let analyze = try #require(Manifests.which("systemd-analyze"), "systemd-analyze is missing: deploy/setup-tools.sh installs it")
        let r = try run(analyze, ["verify", "--root=\(root)", unit])
        #expect(r.status == 0 && r.stdout.isEmpty && r.stderr.isEmpty, "\(unit): \(r.stdout)\(r.stderr)")
        // The agent's and run's bounding sets are the tracing capabilities; the server has none.
        let text = try String(contentsOfFile: "\(root)/usr/lib/systemd/system/\(unit)", encoding: .utf8)
        let bounding = text.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") }
        #expect(bounding == (unit == "infrasight-server.service" ? "CapabilityBoundingSet=" : "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH"))
        for option in ["ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes"] {
            #expect(text.contains("\n\(option)\n"), "\(unit): \(option)")
        }
    }

    // MARK: helpers

    /// scripts/install.sh of the debug build into a new staging root (DESTDIR).
    static func install(chdb: Bool = true) throws -> String {
        let root = try makeTempDir(prefix: "install-root")
        var arguments = ["--build-dir", Paths.binDir, "--bundle-swift-runtime"]
        if !chdb { arguments.append("--no-chdb") }
        let r = try run("\(Paths.packageRoot)/scripts/install.sh", arguments, environment: ["DESTDIR": root])
        guard r.status == 0 else { throw TestFailure("install.sh failed: \(r.stdout)\(r.stderr)") }
        return root
    }

    static func files(in dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).map { "\(dir)/\($0)" }
    }

    static func yaml(_ relative: String) throws -> [String: Any] {
        try #require(try Manifests.yamlDocuments("\(Paths.packageRoot)/\(relative)").first)
    }

    /// The pod template of a workload, for comparing two renderings.
    static func template(_ rendered: RenderedManifests, _ kind: String, _ name: String) throws -> NSDictionary {
        let spec = try #require(try rendered.object(kind, name).json["spec"] as? [String: Any])
        return try #require(spec["template"] as? NSDictionary)
    }

    /// Whether `key: true` appears anywhere in a JSON value.
    static func containsTrue(_ value: Any, key: String) -> Bool {
        if let object = value as? [String: Any] {
            return object.contains { ($0.key == key && ($0.value as? Bool) == true) || containsTrue($0.value, key: key) }
        }
        if let array = value as? [Any] { return array.contains { containsTrue($0, key: key) } }
        return false
    }
}

import Yams

/// `rules:` in the config file: which detection rules run and where alerts go (the flags
/// of `run` and `server` add to it).
///
/// ```yaml
/// rules:
///   default: true                          # the ruleset built into the binary
///   files: [/etc/infrasight/rules/site.yaml]
///   dirs: [/etc/infrasight/rules.d]        # every *.yaml there (this directory is the default)
///   disabled: [shell_in_container]
///   stdout: false                          # alerts as JSON lines on stdout
///   file: /var/log/infrasight/alerts.jsonl # and/or appended to a file (0600)
///   webhooks: [https://hooks.example/infrasight]
///   drift_learn_seconds: 3600              # drift detection's learning window per image
/// ```
public struct RulesConfig: Equatable, Sendable {
    public static let defaultDir = "/etc/infrasight/rules.d"
    public var defaultRules = true
    public var files: [String] = []
    public var dirs: [String] = [RulesConfig.defaultDir]
    public var disabled: [String] = []
    public var stdout = false
    public var file: String?
    public var webhooks: [String] = []
    public var driftLearnSeconds = 3600
    public init() {}
}

extension ConfigReader {
    func rules(_ node: Node) throws(ConfigError) -> RulesConfig {
        var rules = RulesConfig()
        try keys(of: node, at: "rules") { key, value, path throws(ConfigError) in
            switch key {
            case "default": rules.defaultRules = try bool(value, at: path)
            case "files": rules.files = try stringList(value, at: path)
            case "dirs": rules.dirs = try stringList(value, at: path)
            case "disabled": rules.disabled = try stringList(value, at: path)
            case "stdout": rules.stdout = try bool(value, at: path)
            case "file": rules.file = try string(value, at: path)
            case "webhooks":
                rules.webhooks = try stringList(value, at: path)
                for url in rules.webhooks where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                    throw ConfigError(file: file, "\(path): \(url) is not an http(s) URL")
                }
            case "drift_learn_seconds": rules.driftLearnSeconds = try int(value, in: 0...(365 * 86400), at: path)
            default: return false
            }
            return true
        }
        return rules
    }
}

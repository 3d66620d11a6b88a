import Foundation

/// A BPF object compiled and embedded by the ProbeBuilder build-tool plugin. The bytes
/// are decoded once, when the plugin's descriptor is first built, and live for the
/// lifetime of the process (the host never unloads a plugin).
public struct EmbeddedBPFObject: Sendable {
    public let name: String
    public let bytes: [UInt8]

    public init(name: String, base64: String) {
        self.name = name
        guard let data = Data(base64Encoded: base64) else {
            preconditionFailure("embedded BPF object \(name) is not valid base64: the build is corrupt")
        }
        self.bytes = [UInt8](data)
    }
}

/// A table's DDL embedded verbatim from a `.sql` file by the ProbeBuilder plugin.
public struct EmbeddedDDL: Sendable {
    public let name: String
    public let text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

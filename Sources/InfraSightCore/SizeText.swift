import Foundation

/// "512MiB", "10GB", "2TiB", "4096" (bytes) as bytes; nil otherwise (zero, negative, a
/// fraction of a byte, another unit, or more than Int64 holds). KB/MB/GB/TB are powers of
/// 1000, KiB/MiB/GiB/TiB powers of 1024, as `df -H` and `df -h` print them.
public func sizeBytes(_ size: String) -> Int64? {
    let units: [(String, Double)] = [
        ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    var text = Substring(size.trimmingCharacters(in: .whitespaces))
    var unit = 1.0
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        unit = scale
        text = text.dropLast(suffix.count)
        break
    }
    let number = text.trimmingCharacters(in: .whitespaces)
    // Digits and one decimal point only: Double() would also take "0x10", "1e9", "inf".
    guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), number.filter({ $0 == "." }).count <= 1,
        let value = Double(number), value.isFinite, value > 0
    else { return nil }
    let bytes = (value * unit).rounded()
    guard bytes >= 1, bytes < 9.2e18 else { return nil }
    return Int64(bytes)
}

/// How much disk the store may use (`storage.max_disk`).
public enum DiskLimit: Equatable, Sendable, CustomStringConvertible {
    /// No limit: the store grows until the file system is full.
    case none
    /// The store's tables hold at most this many bytes on disk.
    case bytes(Int64)
    /// The file system holding the store is kept at most this percent full (whoever fills it).
    case percent(Int)

    /// "80%", "10GB", "none": as the config reads it.
    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "none" {
            self = .none
        } else if t.hasSuffix("%") {
            guard let p = Int(t.dropLast().trimmingCharacters(in: .whitespaces)), (1...99).contains(p) else { return nil }
            self = .percent(p)
        } else if let b = sizeBytes(t), t.last?.isLetter == true, b >= 1 << 20 {
            // A unit is required and 1 MiB the least: "max_disk: 80" (meant as 80 %)
            // must not become an 80-byte budget that empties the store.
            self = .bytes(b)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .percent(let p): "\(p)%"
        case .bytes(let b): describeBytes(b)
        }
    }
}

/// "3.2 MB", "812 KB", "17 B" (powers of 1000, one decimal under 10).
public func describeBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"]
    var value = Double(bytes)
    var i = 0
    while value >= 1000 && i < units.count - 1 {
        value /= 1000
        i += 1
    }
    if i == 0 { return "\(bytes) B" }
    let text = value < 10 ? String(Double((value * 10).rounded()) / 10) : String(Int(value.rounded()))
    return "\(text) \(units[i])"
}

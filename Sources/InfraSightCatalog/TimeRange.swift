import Foundation

extension QueryCatalog {
    /// "30s", "15m", "2h", "7d" (or a bare number of seconds) in seconds; nil otherwise.
    public static func seconds(of duration: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = Substring(duration.trimmingCharacters(in: .whitespaces))
        var unit = 1.0
        if let last = text.last, let scale = units[last] {
            unit = scale
            text = text.dropLast()
        }
        guard let value = Double(text), value.isFinite, value > 0 else { return nil }
        return value * unit
    }

    /// `from` and `to` for the last `seconds` up to `now`, as the catalog's DateTime64(3)
    /// parameters take them: Unix seconds with milliseconds, which ClickHouse reads the same
    /// in every server time zone.
    public static func timeRange(lastSeconds seconds: Double, now: Date = Date()) -> [String: String] {
        let to = now.timeIntervalSince1970
        return ["from": unixSeconds(to - seconds), "to": unixSeconds(to)]
    }

    /// "1764496800.123".
    public static func unixSeconds(_ t: Double) -> String {
        let ms = Int64((t * 1000).rounded())
        let (s, r) = ms.quotientAndRemainder(dividingBy: 1000)
        return "\(s).\(String(repeating: "0", count: 3 - String(r).count))\(r)"
    }
}

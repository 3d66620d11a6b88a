import Foundation
import InfraSightCore

extension QueryCatalog {
    /// "30s", "15m", "2h", "7d" (or a bare number of seconds) in seconds; nil otherwise.
    public static func seconds(of duration: String) -> Double? { durationSeconds(duration) }

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

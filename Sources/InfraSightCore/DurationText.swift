/// "30s", "15m", "2h", "7d" (or a bare number of seconds) in seconds; nil otherwise
/// (zero, negative, not finite, or another unit).
public func durationSeconds(_ duration: String) -> Double? {
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

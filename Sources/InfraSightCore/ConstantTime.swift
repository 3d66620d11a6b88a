/// Whether two secrets are equal, in time that depends on their lengths only (not on
/// where they first differ), so a token cannot be guessed byte by byte from timing.
public func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<min(x.count, y.count) { diff |= x[i] ^ y[i] }
    return diff == 0
}

// Recording stand-ins for what devices are wired to.

import VisorDevices

/// Keeps every byte a device sends.
final class RecordingSink: ByteSink {
    private(set) var bytes: [UInt8] = []
    func write(_ byte: UInt8) { bytes.append(byte) }
}

/// Keeps every level a device drives, in order.
final class RecordingLine: InterruptLine {
    private(set) var levels: [Bool] = []
    var isHigh: Bool { levels.last ?? false }
    func setLevel(_ high: Bool) { levels.append(high) }
}

/// A small deterministic pseudo-random generator (64-bit LCG, Knuth's MMIX constants), so a
/// failing random script can be replayed.
struct ScriptRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 33
    }
    mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }
}

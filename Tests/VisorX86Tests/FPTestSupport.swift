// Shared pieces of the x87/MMX/SSE tests: the FXSAVE image as a value the tests build and
// compare, and the native runner's state set up from it.

import CX86Native
import VisorX86

/// An FXSAVE64 image (512 bytes) with named fields.
struct FXImage: Equatable {
    var bytes = [UInt8](repeating: 0, count: 512)

    init() {
        fcw = 0x037f
        mxcsr = 0x1f80
    }

    init(bytes: [UInt8]) {
        self.bytes = Array((bytes + [UInt8](repeating: 0, count: 512)).prefix(512))
    }

    func load(_ offset: Int, _ count: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<count { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }

    mutating func store(_ value: UInt64, _ offset: Int, _ count: Int) {
        for i in 0..<count { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    var fcw: UInt16 {
        get { UInt16(load(0, 2)) }
        set { store(UInt64(newValue), 0, 2) }
    }
    var fsw: UInt16 {
        get { UInt16(load(2, 2)) }
        set { store(UInt64(newValue), 2, 2) }
    }
    /// The abridged tag byte: bit i set when R_i is valid.
    var ftw: UInt8 {
        get { bytes[4] }
        set { bytes[4] = newValue }
    }
    var fop: UInt16 { UInt16(load(6, 2)) }
    var fip: UInt64 { load(8, 8) }
    var fdp: UInt64 { load(16, 8) }
    var mxcsr: UInt32 {
        get { UInt32(load(24, 4)) }
        set { store(UInt64(newValue), 24, 4) }
    }
    var top: Int { Int(fsw >> 11) & 7 }

    /// ST(i) (the image holds the registers in stack order).
    func st(_ i: Int) -> Float80Bits {
        Float80Bits(significand: load(32 + 16 * i, 8), signExponent: UInt16(load(40 + 16 * i, 2)))
    }
    mutating func setST(_ i: Int, _ v: Float80Bits) {
        store(v.significand, 32 + 16 * i, 8)
        store(UInt64(v.signExponent), 40 + 16 * i, 2)
    }

    func xmm(_ i: Int) -> (low: UInt64, high: UInt64) { (load(160 + 16 * i, 8), load(168 + 16 * i, 8)) }
    mutating func setXMM(_ i: Int, _ v: (low: UInt64, high: UInt64)) {
        store(v.low, 160 + 16 * i, 8)
        store(v.high, 168 + 16 * i, 8)
    }
}

extension CX86State {
    /// FNINIT's x87 state and the default MXCSR.
    mutating func setDefaultFPU() {
        setFX(FXImage())
    }

    mutating func setFX(_ image: FXImage) {
        withUnsafeMutableBytes(of: &fx) { p in
            for i in 0..<512 { p[i] = image.bytes[i] }
        }
        withUnsafeMutableBytes(of: &xmm) { p in
            for i in 0..<256 { p[i] = image.bytes[160 + i] }
        }
    }

    var fxImage: FXImage {
        var fx = self.fx
        var image = FXImage(bytes: withUnsafeBytes(of: &fx) { Array($0) })
        var xmm = self.xmm
        let x = withUnsafeBytes(of: &xmm) { Array($0) }
        for i in 0..<256 { image.bytes[160 + i] = x[i] }
        return image
    }

    var faultImage: FXImage {
        var fx = self.fault_fx
        return FXImage(bytes: withUnsafeBytes(of: &fx) { Array($0) })
    }
}

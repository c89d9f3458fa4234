// The shared-info page as Visor sees it: the event bitmaps and each vCPU's `vcpu_info`, in
// guest RAM, updated with host atomics because the guest's vCPUs change the same words at the
// same time (they clear pending bits and set mask bits with LOCK-prefixed instructions while
// Visor, on another thread, sets pending bits). A plain read-modify-write here could undo a
// guest's mask-bit set; Xen uses atomic bit operations on these words for the same reason.
//
// Layout: `VisorABI.SharedInfo` / `VCPUInfo`; spec: docs/pv-abi.md.

import CX86Atomics
import VisorABI
import VisorCore

/// The installed shared-info page: a 4 KiB-aligned page of guest RAM, validated once at
/// installation. Every accessor is bounds-checked again through `GuestMemory` and degrades to
/// "nothing" (false, 0) rather than trapping.
struct SharedInfoPage {
    let memory: GuestMemory
    /// Guest-physical address of the page (4 KiB aligned, entirely RAM).
    let address: UInt64
    /// The host address of the page's first byte.
    private let hostBase: UInt

    /// nil unless `address` is 4 KiB aligned and the whole page is guest RAM.
    init?(memory: GuestMemory, address: UInt64) {
        guard address % GuestMemory.pageSize == 0,
              let offset = memory.hostOffset(of: GuestPhysicalAddress(address), length: GuestMemory.pageSize),
              let first = memory.regions.first
        else { return nil }
        // `regions[0]` starts at host offset 0, so its host address is the mapping's base.
        let (base, overflow) = UInt(truncatingIfNeeded: memory.hostAddress(of: first))
            .addingReportingOverflow(UInt(truncatingIfNeeded: offset))
        guard !overflow else { return nil }
        self.memory = memory
        self.address = address
        self.hostBase = base
    }

    /// A host pointer to `width` bytes at `offset` into the page, naturally aligned, or nil.
    private func pointer(_ offset: Int, width: Int) -> UnsafeMutableRawPointer? {
        guard offset >= 0, width > 0, offset % width == 0, offset <= Int(GuestMemory.pageSize) - width else { return nil }
        // SAFETY: the page was checked to be RAM at `init` (`hostOffset` over the whole page);
        // `memory` is retained, so its mapping stays valid; `offset + width` stays inside the
        // page and is naturally aligned, as the `__atomic` builtins require.
        return UnsafeMutableRawPointer(bitPattern: hostBase &+ UInt(offset))
    }

    // MARK: Event bitmaps

    private static func word(of port: UInt32) -> (offset: Int, bit: UInt64) {
        (Int(port / 64) * 8, UInt64(1) << UInt64(port % 64))
    }

    /// Sets port `port`'s pending bit; true if it was already set.
    func testAndSetPending(_ port: UInt32) -> Bool {
        let (offset, bit) = Self.word(of: port)
        guard let p = pointer(SharedInfo.pendingOffset + offset, width: 8) else { return true }
        return cx86_fetch_or64(p, bit) & bit != 0
    }

    func clearPending(_ port: UInt32) {
        let (offset, bit) = Self.word(of: port)
        guard let p = pointer(SharedInfo.pendingOffset + offset, width: 8) else { return }
        _ = cx86_fetch_andnot64(p, bit)
    }

    func isPending(_ port: UInt32) -> Bool {
        let (offset, bit) = Self.word(of: port)
        guard let p = pointer(SharedInfo.pendingOffset + offset, width: 8) else { return false }
        return cx86_load64(p) & bit != 0
    }

    func isMasked(_ port: UInt32) -> Bool {
        let (offset, bit) = Self.word(of: port)
        guard let p = pointer(SharedInfo.maskOffset + offset, width: 8) else { return true }
        return cx86_load64(p) & bit != 0
    }

    /// Clears port `port`'s mask bit; true if it was set.
    func testAndClearMask(_ port: UInt32) -> Bool {
        let (offset, bit) = Self.word(of: port)
        guard let p = pointer(SharedInfo.maskOffset + offset, width: 8) else { return false }
        return cx86_fetch_andnot64(p, bit) & bit != 0
    }

    // MARK: vcpu_info

    private static func vcpuInfo(_ vcpu: Int) -> Int? {
        guard (0..<SharedInfo.maximumVCPUs).contains(vcpu) else { return nil }
        return SharedInfo.vcpuInfoOffset + vcpu * SharedInfo.vcpuInfoSize
    }

    /// Sets bit `word` of the vCPU's pending selector; true if it was already set.
    func testAndSetSelector(vcpu: Int, word: UInt32) -> Bool {
        guard let info = Self.vcpuInfo(vcpu), word < 64,
              let p = pointer(info + VCPUInfo.pendingSelectorOffset, width: 8) else { return true }
        let bit = UInt64(1) << UInt64(word)
        return cx86_fetch_or64(p, bit) & bit != 0
    }

    /// Sets the vCPU's `evtchn_upcall_pending` to 1; true if it was already non-zero.
    func testAndSetUpcallPending(vcpu: Int) -> Bool {
        guard let info = Self.vcpuInfo(vcpu), let p = pointer(info + VCPUInfo.upcallPendingOffset, width: 1) else {
            return true
        }
        while true {
            let old = cx86_load8(p)
            if old != 0 { return true }
            if cx86_cas8(p, 0, 1) { return false }
        }
    }

    func upcallPending(vcpu: Int) -> Bool {
        guard let info = Self.vcpuInfo(vcpu), let p = pointer(info + VCPUInfo.upcallPendingOffset, width: 1) else {
            return false
        }
        return cx86_load8(p) != 0
    }

    func upcallMasked(vcpu: Int) -> Bool {
        guard let info = Self.vcpuInfo(vcpu), let p = pointer(info + VCPUInfo.upcallMaskOffset, width: 1) else {
            return true
        }
        return cx86_load8(p) != 0
    }

    func setUpcallMask(vcpu: Int, _ masked: Bool) {
        guard let info = Self.vcpuInfo(vcpu), let p = pointer(info + VCPUInfo.upcallMaskOffset, width: 1) else { return }
        let value: UInt8 = masked ? 1 : 0
        while true {
            let old = cx86_load8(p)
            if old == value || cx86_cas8(p, old, value) { return }
        }
    }

    // MARK: Time

    /// Writes vCPU `vcpu`'s `vcpu_time_info` with the version protocol: version made odd,
    /// fields written, version made even (the seq-cst atomics order the field stores between).
    func writeTime(vcpu: Int, tscTimestamp: UInt64, systemTime: UInt64, scale: PVClockScale, flags: UInt8) {
        guard let info = Self.vcpuInfo(vcpu),
              let version = pointer(info + VCPUInfo.timeVersionOffset, width: 4) else { return }
        func bump() {
            while true {
                let old = cx86_load32(version)
                if cx86_cas32(version, old, old &+ 1) { return }
            }
        }
        // Odd while updating: a reader that sees an odd or changed version retries.
        if cx86_load32(version) & 1 == 0 { bump() }
        let base = address &+ UInt64(info)
        func at(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(base &+ UInt64(offset)) }
        try? memory.store(tscTimestamp, at: at(VCPUInfo.timeTSCTimestampOffset))
        try? memory.store(systemTime, at: at(VCPUInfo.timeSystemTimeOffset))
        try? memory.store(scale.multiplier, at: at(VCPUInfo.timeMultiplierOffset))
        try? memory.store(UInt8(bitPattern: scale.shift), at: at(VCPUInfo.timeShiftOffset))
        try? memory.store(flags, at: at(VCPUInfo.timeFlagsOffset))
        bump()
    }
}

/// The pvclock scale for a TSC of a given rate, computed as Xen's `set_time_scale` does:
/// `ns = ((delta << shift) or (delta >> -shift)) * multiplier >> 32`, with the shifted rate in
/// (1 GHz, 2 GHz] so the multiplier (< 2^32) keeps the most precision.
struct PVClockScale: Equatable, Sendable {
    var multiplier: UInt32
    var shift: Int8

    init(multiplier: UInt32, shift: Int8) {
        self.multiplier = multiplier
        self.shift = shift
    }

    /// The scale for a TSC ticking `frequency` times per second (0 is taken as 1 Hz).
    init(frequency: UInt64) {
        let nanosecondsPerSecond: UInt64 = 1_000_000_000
        var ticks = max(frequency, 1)
        var shift = 0
        while ticks > 2 * nanosecondsPerSecond {
            ticks >>= 1
            shift -= 1
        }
        while ticks <= nanosecondsPerSecond {
            ticks <<= 1
            shift += 1
        }
        // ticks is in (1e9, 2e9], so the quotient is below 2^32.
        multiplier = UInt32(truncatingIfNeeded: (nanosecondsPerSecond << 32) / ticks)
        self.shift = Int8(truncatingIfNeeded: shift)
    }

    /// What a guest computes from a TSC delta (`VisorABI.PVClock.nanoseconds`).
    func nanoseconds(forTicks delta: UInt64) -> UInt64 {
        PVClock.nanoseconds(tscDelta: delta, multiplier: multiplier, shift: shift)
    }
}

// The step loop: take a pending interrupt, fetch the instruction at CS:RIP through paging with
// execute permission, decode it (from the physical decode cache when possible), execute it, and
// deliver any fault — until the budget runs out or the hypervisor is needed.
//
// Fetch reads up to 15 bytes but never past the end of the page holding RIP; when the decoder
// says `.truncated` the next page is translated (an unmapped page raises #PF with CR2 = its first
// byte) and the instruction decoded again. Code outside RAM reads as 0xff bytes (executing from
// MMIO is not supported; it gives #UD, never an exit). An instruction that needs a hypervisor
// answer is abandoned with RIP unchanged and executed again once the answer is there.

import VisorCore
import VisorX86Decode

/// Why `run(budget:)` returned.
public enum StepOutcome: Equatable, Sendable {
    /// The instruction budget is used up; nothing else happened.
    case budgetExhausted
    /// The CPU executed HLT and no interrupt can wake it now.
    case halted
    /// A port or MMIO write (or several) was recorded by the bus: take it with the bus's
    /// own API, then run again.
    case pendingExit
    /// The instruction at RIP needs this answer (port or MMIO read) first; RIP still points at it.
    case needsHypervisor(Exit)
    /// An external interrupt could be taken before the next instruction (IF = 1, no interrupt
    /// shadow, none pending) and `interruptWindowRequested` is set.
    case interruptWindow
    /// Triple fault: the CPU is in shutdown.
    case shutdown
    /// `stopRequest` was set.
    case stopped
}

extension X86Machine {
    /// Runs at most `budget` instructions (interrupt and exception deliveries do not count; a
    /// translated block may end a few past it).
    public func run(budget: Int) -> StepOutcome {
        if isShutdown { return .shutdown }
        var remaining = budget
        while remaining > 0 {
            if stopRequest.take() { return .stopped }
            budgetLeft = remaining
            if let outcome = step() { return outcome }
            // A translated block counts its instructions; the interpreter's step counts one.
            remaining -= max(1, blockRetired)
            blockRetired = 0
        }
        return .budgetExhausted
    }

    /// Executes one instruction (or delivers one interrupt, or stays halted). Returns nil when the
    /// loop may continue.
    public func step() -> StepOutcome? {
        if isShutdown { return .shutdown }
        let inhibited = cpu.interruptShadow
        // One check on the hot path: `needsInterruptCheck` is false unless an interrupt is
        // pending or a window exit was asked for.
        if needsInterruptCheck && !inhibited {
            if nmiPending && !nmiBlocked {
                // An NMI goes first and whatever IF says (the handler then runs with IF clear).
                guard deliverPendingNMI() else { return .shutdown }
            } else if cpu.rflags & X86SystemBits.flagIF != 0 {
                if pendingInterrupt == nil { return .interruptWindow }
                guard deliverPendingInterrupt() else { return .shutdown }
            }
        }
        if cpu.halted { return .halted }
        // One test for the debug features: TF or RF set, a breakpoint enabled, a trap deferred.
        if cpu.rflags & X86DebugBits.stepFlags != 0 || cpu.debugArmed { return stepDebugging(inhibited: inhibited) }
        cpu.interruptShadow = false
        // An event held off at this boundary only by the STI / MOV SS shadow is due right after
        // this one instruction (as `injectInterrupt` promises): the interpreter runs it, not a
        // translated block.
        if let executor = stepExecutor, !(inhibited && needsInterruptCheck) {
            // Translated code first (the `bt` engine); when it has nothing for this
            // instruction, the interpreter runs it below.
            let retired = executor.executeBlock(on: self)
            if retired > 0 {
                instructionsRetired &+= UInt64(retired)
                blockRetired = retired
                return nil
            }
        }
        beginInstruction()
        do {
            let insn = try fetchInstruction()
            try execute(insn)
            commitAccesses()
            instructionsRetired &+= 1
        } catch {
            switch error {
            case .fault(let fault):
                commitAccesses()
                if !raise(fault) { return .shutdown }
            case .stop(.needsHypervisor(let exit)):
                cpu.interruptShadow = inhibited
                return .needsHypervisor(exit)
            case .stop(.retryLocked):
                // Never escapes `executeLocked`; were it to, the instruction had no effect and
                // simply runs again.
                cpu.interruptShadow = inhibited
                return nil
            }
        }
        return afterInstruction()
    }

    /// What the step loop does once an instruction retired or its fault was delivered.
    @inline(__always)
    func afterInstruction() -> StepOutcome? {
        if hasPendingExit { return .pendingExit }
        if cpu.halted {
            // HLT with an interrupt that can be taken right away does not stop.
            if (pendingInterrupt != nil && interruptWindowOpen) || (nmiPending && !nmiBlocked) { return nil }
            return .halted
        }
        return nil
    }

    /// Fetches and decodes the instruction at CS:RIP.
    @inline(never)
    public func fetchInstruction() throws(X86Interruption) -> DecodedInstruction {
        let mode = cpu.codeMode
        let rip = cpu.rip
        let linear: UInt64
        if mode == .bits64 {
            // As `linearAddress` checks it for CS in 64-bit mode: no base, canonical.
            guard Self.isCanonical(rip) else { throw .fault(.gp(0)) }
            linear = rip
        } else {
            linear = try linearAddress(segment: UInt8(X86CPU.cs), offset: rip, size: 1)
        }
        // Shortcut: same linear page as the last fetch, with no translation or cache change
        // since; the page offset is the same in the linear and the physical address.
        if linear >> 12 == fetchLinearPage, fetchEpoch == fetchEpochNow,
           let slots = fetchSlots, let entries = fetchEntries {
            // In bounds: see `X86DecodeCache.Page` (offset masked; non-zero slots name entries).
            let slot = slots[Int(truncatingIfNeeded: linear & 0xfff)]
            if slot & 3 == UInt32(mode.rawValue) && slot >> 2 != 0 {
                let insn = entries[Int(slot >> 2) - 1]
                if mode != .bits64 { try checkCodeLimit(length: insn.length) }
                decodeCache.hits &+= 1
                return insn
            }
        }
        return try fetchSlow(linear: linear, mode: mode)
    }

    /// Fetch through the TLB and the decode cache (decoding on a miss); sets up the shortcut.
    @inline(never)
    func fetchSlow(linear: UInt64, mode: CodeMode) throws(X86Interruption) -> DecodedInstruction {
        let physical = try translate(linear, .execute)
        defer {
            let page = decodeCache.page(physical >> 12)
            fetchLinearPage = linear >> 12
            fetchSlots = page?.slots
            fetchEntries = page?.entries
            fetchEpoch = fetchEpochNow
        }
        if let cached = decodeCache.lookup(physical, mode: mode) {
            try checkCodeLimit(length: cached.length)
            return cached
        }
        let firstCount = min(15, 4096 - Int(linear & 0xfff))
        // Where an instruction that crosses the page goes on (outside 64-bit mode, wrapping at 4 GiB).
        let nextPage = mode == .bits64 ? (linear | 0xfff) &+ 1 : ((linear | 0xfff) &+ 1) & 0xffff_ffff
        let crossingSlot = Int(truncatingIfNeeded: linear >> 12) & (CrossingFetch.slots - 1)  // by page: all sit at a page's end
        if firstCount < 15, let seen = crossingFetches[crossingSlot], seen.linear == linear, seen.mode == mode,
           seen.first == physical, seen.invalidations == decodeCache.invalidations {
            if try translate(nextPage, .execute) == seen.second {
                try checkCodeLimit(length: seen.insn.length)
                decodeCache.hits &+= 1
                return seen.insn
            }
        }
        // Mark the page before reading its bytes, so another vCPU's store after the read logs it.
        codeWatch?.markDecoded(page: physical >> 12)
        var bytes = [UInt8](repeating: 0, count: 15)
        copyCode(from: physical, into: &bytes, at: 0, count: firstCount)
        var result = bytes.withUnsafeBytes { decode(UnsafeRawBufferPointer(rebasing: $0[0..<firstCount]), mode) }
        var crossesPage = false
        if result == .truncated && firstCount < 15 {
            let second = try translate(nextPage, .execute)
            codeWatch?.markDecoded(page: second >> 12)
            copyCode(from: second, into: &bytes, at: firstCount, count: 15 - firstCount)
            result = bytes.withUnsafeBytes { decode($0, mode) }
            crossesPage = true
            if case .instruction(let insn) = result, Int(insn.length) > firstCount,
               memory.contains(GuestPhysicalAddress(physical), length: UInt64(firstCount)),
               memory.contains(GuestPhysicalAddress(second), length: UInt64(Int(insn.length) - firstCount)) {
                // Its bytes on both pages count as code, so a store to either drops the pages
                // (`invalidations` moves) and with them this entry.
                decodeCache.markCode(physical, length: firstCount)
                decodeCache.markCode(second, length: Int(insn.length) - firstCount)
                crossingFetches[crossingSlot] = CrossingFetch(linear: linear, mode: mode, first: physical, second: second,
                                                              invalidations: decodeCache.invalidations, insn: insn)
            }
        }
        switch result {
        case .instruction(let insn):
            try checkCodeLimit(length: insn.length)
            if !crossesPage && memory.contains(GuestPhysicalAddress(physical), length: UInt64(insn.length)) {
                decodeCache.insert(physical, mode: mode, insn)
            }
            return insn
        case .undefined:
            throw .fault(.undefined)
        case .tooLong, .truncated:
            throw .fault(.gp(0))
        }
    }

    /// #GP(0) if the instruction's last byte is beyond CS's limit (outside 64-bit mode).
    @inline(__always)
    private func checkCodeLimit(length: UInt8) throws(X86Interruption) {
        guard protectedMode, cpu.codeMode != .bits64 else { return }
        let last = cpu.rip &+ UInt64(length) &- 1
        guard last <= UInt64(cpu.segments[X86CPU.cs].limit) else { throw .fault(.gp(0)) }
    }

    /// Copies code bytes from physical memory; bytes outside RAM read as 0xff.
    private func copyCode(from physical: UInt64, into bytes: inout [UInt8], at start: Int, count: Int) {
        if let chunk = try? memory.read(at: GuestPhysicalAddress(physical), count: count) {
            for i in 0..<count { bytes[start + i] = chunk[i] }
            return
        }
        for i in 0..<count {
            bytes[start + i] = (try? memory.load(UInt8.self, at: GuestPhysicalAddress(physical &+ UInt64(i)))) ?? 0xff
        }
    }
}

extension X86Machine {
    /// What `fetchEpoch` must equal for the fetch shortcut to be used.
    @inline(__always)
    var fetchEpochNow: UInt64 {
        cpu.translationEpoch &+ tlb.generation &+ decodeCache.invalidations &+ decodeCache.fills
    }

    // The bus's per-instruction notifications, called directly on the interp bus.
    @inline(__always)
    func beginInstruction() {
        if let p = interpBus {
            p._withUnsafeGuaranteedRef { $0.beginInstruction() }
        } else {
            bus.beginInstruction()
        }
    }

    @inline(__always)
    func commitAccesses() {
        if let p = interpBus {
            p._withUnsafeGuaranteedRef { $0.commitAccesses() }
        } else {
            bus.commitAccesses()
        }
    }

    @inline(__always)
    var hasPendingExit: Bool {
        if let p = interpBus { return p._withUnsafeGuaranteedRef { $0.hasPendingExit } }
        return bus.hasPendingExit
    }
}

/// An instruction that crosses from one page into the next, as `fetchSlow` decoded it: valid
/// while RIP, the mode and both pages' physical addresses are the same and no cached code has
/// been dropped since (its bytes on both pages are marked as code, so a store to them drops
/// those pages). Decoding one again each time was most of the fetch time for them, and
/// Linux's hot paths have a few (a Jcc or MOV whose bytes straddle a page boundary).
struct CrossingFetch {
    static let slots = 64
    let linear: UInt64
    let mode: CodeMode
    let first: UInt64, second: UInt64
    let invalidations: UInt64
    let insn: DecodedInstruction
}

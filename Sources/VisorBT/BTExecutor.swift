// The `bt` engine's per-vCPU translator and dispatcher: finds (or makes) the translated block
// for CS:RIP, runs it on the context block, and hands the CPU back to the step loop, which
// checks for interrupts, stop requests and the budget between blocks and runs through the
// interpreter whatever a block stopped before.
//
// Blocks are keyed by the guest-physical address of their first instruction, its RIP and the
// code mode: the code bakes in RIP-relative addresses and branch targets, so the same bytes
// reached at another RIP get a block of their own. A block never leaves its physical page, and
// it decodes through the machine's decode cache, so every store that reaches a page with
// cached code (this vCPU's at once, another vCPU's at this one's next serializing point) drops
// the page's blocks before they can run again (`codeInvalidated`).

import VisorCore
import VisorX86
import VisorX86Decode

/// What a `bt` vCPU translated and ran.
public struct BTStatistics: Sendable, Equatable {
    /// Blocks translated, and the guest instructions in them.
    public var blocksTranslated: UInt64 = 0
    public var instructionsTranslated: UInt64 = 0
    /// Host nanoseconds spent translating (decode, emit, install).
    public var translationNanoseconds: UInt64 = 0
    /// Block runs, and the guest instructions they retired.
    public var blocksRun: UInt64 = 0
    public var instructionsRun: UInt64 = 0
    /// Blocks dropped because their code was written, and times the code cache was emptied.
    public var blocksInvalidated: UInt64 = 0
    public var cacheResets: UInt64 = 0
    /// Host bytes of translated code in the cache now.
    public var codeBytes: UInt64 = 0
    public init() {}
}

/// The translator and code cache of one `bt` vCPU.
public final class BTExecutor: X86BlockExecutor {
    struct BlockKey: Hashable {
        let physical: UInt64
        let rip: UInt64
        let mode: CodeMode
    }

    /// A translated block, or a marker that the instruction at its key has none (the
    /// interpreter runs it).
    struct Block {
        typealias Entry = @convention(c) (UnsafeMutableRawPointer) -> UInt64
        let entry: Entry?
        let instructions: Int
    }

    private var blocks: [BlockKey: Block] = [:]
    /// The keys of the blocks on each physical page, for invalidation.
    private var pageKeys: [UInt64: [BlockKey]] = [:]
    private let cache: CodeCache
    // SAFETY: `BTContext.size` bytes, 16-byte aligned, owned by this executor (freed in deinit);
    // translated code and the callouts access it only at the offsets in `BTContext`.
    private let context: UnsafeMutableRawPointer
    public private(set) var statistics = BTStatistics()

    /// Default code cache size per vCPU.
    public static let defaultCacheBytes = 32 << 20

    public init(cacheBytes: Int = BTExecutor.defaultCacheBytes) throws {
        cache = try CodeCache(capacity: cacheBytes)
        context = .allocate(byteCount: BTContext.size, alignment: 16)
        context.initializeMemory(as: UInt8.self, repeating: 0, count: BTContext.size)
    }

    deinit { context.deallocate() }

    // MARK: X86BlockExecutor

    public func executeBlock(on machine: X86Machine) -> Int {
        let cpu = machine.cpu
        // An event held off at this boundary only by the STI / MOV SS shadow (the step loop
        // checks the rest) is due right after this one instruction, as interp takes it and
        // `injectInterrupt` promises: the interpreter runs the instruction, not a whole block.
        if cpu.rflags & X86SystemBits.flagIF != 0 && (machine.pendingInterrupt != nil || machine.interruptWindowRequested)
            || (machine.nmiPending && !machine.nmiBlocked) {
            return 0
        }
        let mode = cpu.codeMode
        let rip = cpu.rip
        let linear: UInt64
        if mode == .bits64 {
            guard BlockTranslator.isCanonical(rip) else { return 0 }
            linear = rip
        } else {
            // Translated branches mask RIP to the mode's width and never check CS's limit:
            // only a code segment that reaches as far as RIP can is run translated.
            guard UInt64(cpu.segments[X86CPU.cs].limit) >= BlockTranslator.instructionPointerMask(mode),
                  let l = try? machine.linearAddress(segment: UInt8(X86CPU.cs), offset: rip, size: 1) else { return 0 }
            linear = l
        }
        guard let physical = try? machine.translate(linear, .execute) else { return 0 }
        let key = BlockKey(physical: physical, rip: rip, mode: mode)
        let block: Block
        if let b = blocks[key] {
            block = b
        } else {
            block = translate(key, machine: machine)
        }
        guard let entry = block.entry else { return 0 }
        return run(entry, machine: machine)
    }

    public func codeInvalidated(physicalPage page: UInt64?) {
        guard let page else {
            statistics.blocksInvalidated &+= UInt64(blocks.count)
            blocks.removeAll(keepingCapacity: true)
            pageKeys.removeAll(keepingCapacity: true)
            return
        }
        guard let keys = pageKeys.removeValue(forKey: page) else { return }
        for key in keys where blocks.removeValue(forKey: key) != nil {
            statistics.blocksInvalidated &+= 1
        }
    }

    // MARK: Running

    private func run(_ entry: Block.Entry, machine: X86Machine) -> Int {
        let cpu = machine.cpu
        // SAFETY: the context block has room for 16 registers at offset 0 (BTContext).
        let registers = context.assumingMemoryBound(to: UInt64.self)
        for i in 0..<16 { registers[i] = cpu.gpr[i] }
        context.storeBytes(of: cpu.rip, toByteOffset: Int(BTContext.rip), as: UInt64.self)
        context.storeBytes(of: cpu.rflags, toByteOffset: Int(BTContext.rflags), as: UInt64.self)
        context.storeBytes(of: Unmanaged.passUnretained(machine).toOpaque(), toByteOffset: Int(BTContext.machine),
                           as: UnsafeMutableRawPointer.self)
        let retired = Int(entry(context))
        for i in 0..<16 { cpu.gpr[i] = registers[i] }
        cpu.rip = context.load(fromByteOffset: Int(BTContext.rip), as: UInt64.self)
        cpu.rflags = context.load(fromByteOffset: Int(BTContext.rflags), as: UInt64.self)
        statistics.blocksRun &+= 1
        statistics.instructionsRun &+= UInt64(retired)
        return retired
    }

    // MARK: Translating

    private func translate(_ key: BlockKey, machine: X86Machine) -> Block {
        let start = MonotonicClock.hostNanoseconds()
        defer { statistics.translationNanoseconds &+= MonotonicClock.hostNanoseconds() &- start }
        let ipMask = BlockTranslator.instructionPointerMask(key.mode)
        var instructions: [GuestInstruction] = []
        var physical = key.physical
        var rip = key.rip
        while instructions.count < BlockTranslator.maximumInstructions {
            guard let insn = machine.decodeForTranslation(physical: physical, mode: key.mode) else { break }
            let length = UInt64(insn.length)
            // The instruction must not wrap the instruction pointer (16- and 32-bit code).
            guard key.mode == .bits64 || rip &+ length - 1 <= ipMask else { break }
            let next = (rip &+ length) & ipMask
            guard BlockTranslator.covers(insn, mode: key.mode, next: next) else { break }
            instructions.append(GuestInstruction(rip: rip, insn: insn))
            if BlockTranslator.endsBlock(insn) { break }
            physical &+= length
            rip = next
            if physical & 0xfff == 0 { break }  // the page ends here
        }
        let block: Block
        if instructions.isEmpty {
            block = Block(entry: nil, instructions: 0)
        } else if let code = BlockTranslator.translate(instructions, next: rip, mode: key.mode, callouts: Self.callouts),
                  let address = install(code) {
            // SAFETY: `address` holds `code`, a complete function with the C calling convention
            // taking the context block (BlockTranslator's prologue and epilogue).
            block = Block(entry: unsafeBitCast(address, to: Block.Entry.self), instructions: instructions.count)
            statistics.blocksTranslated &+= 1
            statistics.instructionsTranslated &+= UInt64(instructions.count)
            statistics.codeBytes = UInt64(cache.used)
        } else {
            block = Block(entry: nil, instructions: 0)
        }
        blocks[key] = block
        pageKeys[key.physical >> 12, default: []].append(key)
        return block
    }

    /// Installs `code`, emptying the cache (and dropping every block) when it is full.
    private func install(_ code: [UInt8]) -> UnsafeRawPointer? {
        if let address = cache.install(code) { return address }
        codeInvalidated(physicalPage: nil)
        cache.reset()
        statistics.cacheResets &+= 1
        return cache.install(code)
    }

    // MARK: Callouts

    /// The callouts' addresses, once.
    static let callouts: BTCallouts = {
        let load: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64) -> UInt64 = { context, offset, info in
            // SAFETY: `context` is a BTExecutor's context block, whose machine slot `run` set to
            // the X86Machine running the block (alive: it is running it).
            let machine = Unmanaged<X86Machine>.fromOpaque(
                context.load(fromByteOffset: Int(BTContext.machine), as: UnsafeRawPointer.self)).takeUnretainedValue()
            let value = machine.loadForTranslation(segment: UInt8(truncatingIfNeeded: info),
                                                   offset: offset, size: Int((info >> 8) & 0xff),
                                                   forWrite: info & (1 << 16) != 0)
            context.storeBytes(of: value == nil ? 1 : 0, toByteOffset: Int(BTContext.status), as: UInt64.self)
            return value ?? 0
        }
        let store: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64, UInt64) -> UInt64 = { context, offset, info, value in
            // SAFETY: as for `load`.
            let machine = Unmanaged<X86Machine>.fromOpaque(
                context.load(fromByteOffset: Int(BTContext.machine), as: UnsafeRawPointer.self)).takeUnretainedValue()
            return machine.storeForTranslation(segment: UInt8(truncatingIfNeeded: info), offset: offset,
                                               size: Int((info >> 8) & 0xff), value: value) ? 1 : 0
        }
        return BTCallouts(load: UInt64(UInt(bitPattern: unsafeBitCast(load, to: UnsafeRawPointer.self))),
                          store: UInt64(UInt(bitPattern: unsafeBitCast(store, to: UnsafeRawPointer.self))))
    }()
}

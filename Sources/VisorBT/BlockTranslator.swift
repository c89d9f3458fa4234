// Guest instructions → host machine code, one block at a time.
//
// A block is a run of guest instructions from one physical page, ended by a control transfer,
// by an instruction the translator does not cover, by the end of the page (or by an
// instruction that crosses into the next: `BTExecutor.Crossing`), or at
// `maximumInstructions`. Its code works on the guest registers in the context block (R15) and
// keeps the guest's six status flags in the host's RFLAGS between instructions: an x86 host
// computes them exactly as the guest would, so an ADD is an ADD and a Jcc is a Jcc on the same
// condition code. Flags are saved to the context only around calls into Swift (memory
// accesses), when the block ends, and once at the start of a run of instructions before which
// they are dead or that touches none up to the block's exit (see "Regions where the guest's
// flags are dead"), whose memory accesses then probe the host TLB with ordinary,
// flag-clobbering arithmetic.
//
// Precise state: a guest instruction writes its registers only after everything that can fail
// (a memory access refused by the callout, a non-canonical return address) has succeeded, so
// a failure stops the block with every register, RIP and RFLAGS exactly as before the
// instruction. The interpreter then runs that instruction, raising its fault or making its
// exit as `interp` would: bt never delivers an exception itself.
//
// Covered today: MOV, MOVZX/MOVSX/MOVSXD, LEA, the ALU group (ADD ... CMP, TEST), INC, DEC,
// NOT, NEG, shifts and rotates, IMUL (two and three operands), MUL/DIV/IDIV at 32 and 64 bits
// (a division that could fault goes to the interpreter), BT/BTS/BTR/BTC (registers, memory
// with an immediate bit index, and in 64-bit code bit strings in memory and LOCK'd forms),
// BSF/BSR/TZCNT and SHLD/SHRD by an immediate (their undefined flags as the interpreter
// leaves them), BSWAP, SETcc, CMOVcc, CBW/CWD and their wider forms, XCHG of
// registers, NOP/PAUSE, LFENCE/SFENCE/MFENCE, Jcc and JMP (relative), and in 64-bit mode PUSH
// of registers, immediates and memory, POP of registers, CALL (relative and indirect), indirect
// JMP, near RET, LEAVE, REP STOS/MOVS (a callout moves whole runs), CMPXCHG/XADD, CMPXCHG16B,
// XCHG and the LOCK'd ALU read-modify-writes on memory (one host LOCK'd instruction each; with
// other vCPUs, whose stores are watched, the interpreter does them), CLD/STD (DF in the
// context's RFLAGS), and the system instructions Linux runs hundreds of thousands of
// times while booting or in its system calls: PUSHF and MOV from a segment register
// (sensitive: counted in the context and added to the machine's counts at the entry's CPL, so
// `--stats` shows them as the interpreter counts them), CLI, STI, SWAPGS, RDTSC/RDTSCP
// (a callout reads the machine's counter) and SYSCALL/SYSRET (a callout changes the privilege
// level and answers the next block). CALL and RET also use the host's stack, so that the host
// predicts returns (see "Returns through the host's stack" below); a retpoline thunk's CALL,
// `mov [rsp], reg` and RET are translated together as one indirect jump. Everything
// else (other LOCK'd and string instructions, other system instructions, x87/SSE, port I/O) runs
// through the interpreter one instruction at a time — among them every other instruction Robin
// and Irvine list as sensitive, which the monitor sees there.

import VisorX86
import VisorX86Decode
#if canImport(Glibc)
import Glibc
#endif

/// Which inline paths translated code may take on this host and machine.
struct BTFastPaths {
    /// Loads through the host TLB (64-bit code; FS and GS with their base added): the probe uses BMI2's
    /// flag-preserving shifts, so only on hosts that have them.
    var loads: Bool
    /// Stores through the host TLB too: not when other vCPUs watch this one's stores to code
    /// (each store must then be noted through the machine).
    var stores: Bool

    /// BMI2 on this host (CPUID.(EAX=7,ECX=0):EBX bit 8), from /proc/cpuinfo's flags.
    static let hostHasBMI2: Bool = {
        let fd = open("/proc/cpuinfo", O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // The first processor's "flags" line is within the first few KiB.
        var buffer = [UInt8](repeating: 0, count: 16384)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return false }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        guard let flags = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return false }
        return flags.split(separator: " ").contains("bmi2")
    }()
}

/// The addresses of the Swift functions translated code calls (C calling convention).
struct BTCallouts {
    /// (context, offset, info) → value; sets the context's status to 0 on success.
    let load: UInt64
    /// (context, offset, info, value) → 1 on success, 0 when the interpreter must do it.
    let store: UInt64
    /// (context, info) → 1 when a REP STOS/MOVS ran to RCX = 0; 0 when the interpreter must
    /// go on with it (the iterations done are in the context's RCX, RSI and RDI).
    let string: UInt64
    /// (context, rip, budget left) → the body of the block for `rip`, or 0: back to Swift.
    var lookup: UInt64 = 0
    /// (context, 1 for RDTSCP) → 1 with the time-stamp counter in the context's EDX:EAX (and
    /// IA32_TSC_AUX in ECX), 0 when the interpreter must run it (CR4.TSD above CPL 0).
    var timeStamp: UInt64 = 0
    /// (context, 1 for SYSRET, the RIP after the instruction, budget left) → 0 when the
    /// interpreter must run it (nothing changed), 1 when it was done and Swift takes over, or the
    /// body of the block at the new RIP (`BTExecutor.systemCall`).
    var systemCall: UInt64 = 0

    /// `info` for a callout: segment (bits 7:0), size in bytes (15:8), a load for a write (16).
    static func info(segment: UInt8, size: UInt8, forWrite: Bool = false) -> UInt64 {
        UInt64(segment) | UInt64(size) << 8 | (forWrite ? 1 << 16 : 0)
    }
}

/// A constant block exit that can be linked straight to the block at its target: the target is
/// on the same physical page, so both are dropped together and a link never outlives its
/// target. Offsets are into the block's code.
struct ChainSite {
    let target: UInt64
    /// The rel32 of the exit's jump to the target block's body (after the instructions are
    /// counted against the budget), which goes on to the jump cache lookup until linked.
    let fastJump: Int
}

/// A translated block: its code and the exits that may be linked.
struct TranslatedBlock {
    let code: [UInt8]
    let chainSites: [ChainSite]
    /// It ends in a retpoline thunk made one indirect jump (`retpolineRegister`).
    var endsInRetpoline = false
}

/// One guest instruction of a block, with its address.
struct GuestInstruction {
    let rip: UInt64
    let insn: DecodedInstruction
}

/// Turns guest instructions into host code.
struct BlockTranslator {
    /// Instructions in one block at most (the step loop checks interrupts and the budget
    /// between blocks).
    static let maximumInstructions = 64

    /// Whether translated code can run `insn` in `mode`; `next` is the address after it (for
    /// relative branch targets, which must be canonical).
    static func covers(_ insn: DecodedInstruction, mode: CodeMode, next: UInt64) -> Bool {
        if insn.prefixes.lock {
            // One host LOCK'd instruction on memory, through the host TLB (64-bit code): CMPXCHG,
            // XADD, and the read-modify-write ALU operations (Linux's atomics and its smp_mb(),
            // `lock add $0, -4(%rsp)`). The rest (and LOCK on a register, #UD) is the interpreter's.
            switch insn.operation {
            case .cmpxchg, .xadd, .cmpxchgDouble: break
            case .add, .or, .adc, .sbb, .and, .sub, .xor:
                guard mode == .bits64, insn.destination.kind == .memory,
                      insn.source.kind == .register || insn.source.kind == .highByte || insn.source.kind == .immediate
                else { return false }
            case .inc, .dec, .not, .neg:
                guard mode == .bits64, insn.destination.kind == .memory else { return false }
            case .bts, .btr, .btc:
                // (LOCK BT, which writes nothing, is #UD: the interpreter's.)
                guard mode == .bits64, insn.destination.kind == .memory else { return false }
            default: return false
            }
        }
        // (TZCNT's F3 is part of its opcode.)
        if insn.prefixes.repetition != .none && insn.operation != .stos && insn.operation != .movs
            && insn.operation != .tzcnt { return false }
        let d = insn.destination, s = insn.source
        let size = operationSize(insn)
        func data(_ o: Operand) -> Bool { o.kind == .register || o.kind == .highByte || o.kind == .memory }
        func sizeOK(_ s: UInt8) -> Bool { s == 1 || s == 2 || s == 4 || s == 8 }
        let long = mode == .bits64
        switch insn.operation {
        case .mov, .add, .or, .adc, .sbb, .and, .sub, .xor, .cmp, .test:
            return data(d) && (data(s) || s.kind == .immediate) && !(d.kind == .memory && s.kind == .memory)
                && sizeOK(size)
        case .inc, .dec, .not, .neg:
            return data(d) && sizeOK(size)
        case .rol, .ror, .rcl, .rcr, .shl, .shr, .sar:
            return data(d) && sizeOK(size)
                && (s.kind == .immediate || (s.kind == .register && s.index == 1 && s.size == 1))
        case .lea:
            return d.kind == .register && s.kind == .memory && (size == 2 || size == 4 || size == 8)
        case .movzx, .movsx:
            return d.kind == .register && data(s) && (s.size == 1 || s.size == 2 || s.size == 4) && sizeOK(d.size)
        case .imul:
            return d.kind == .register && (s.kind == .register || s.kind == .memory)
                && (insn.source2.kind == .register || insn.source2.kind == .immediate)
                && (size == 2 || size == 4 || size == 8)
        case .setcc:
            return data(d) && d.size == 1
        case .cmovcc:
            return d.kind == .register && (s.kind == .register || s.kind == .memory) && (size == 2 || size == 4 || size == 8)
        case .signExtendAccumulator, .signExtendIntoDX:
            return insn.operandSize == 2 || insn.operandSize == 4 || insn.operandSize == 8
        case .xchg:
            func reg(_ o: Operand) -> Bool { o.kind == .register || o.kind == .highByte }
            // With memory (locked by itself): one host XCHG through the host TLB.
            return sizeOK(size) && (reg(d) && reg(s) || long && (d.kind == .memory && reg(s) || reg(d) && s.kind == .memory))
        case .cld, .std:
            // DF lives in the context's RFLAGS (the host's stays clear).
            return long
        case .cmpxchgDouble:
            // CMPXCHG16B (Linux's per-CPU slab freelists), as one host LOCK CMPXCHG16B.
            return long && d.kind == .memory && (insn.operandSize == 16 || d.size == 16)
        case .nop, .pause:
            return true
        case .bswap:
            return d.kind == .register && (d.size == 4 || d.size == 8)
        case .bt, .bts, .btr, .btc:
            // Registers, or memory with an immediate bit index, or (64-bit code and addresses)
            // memory with a register index, which addresses a whole bit string.
            return (d.size == 2 || d.size == 4 || d.size == 8) && (s.kind == .register || s.kind == .immediate)
                && (d.kind == .register || (d.kind == .memory && (s.kind == .immediate || (long && insn.addressSize == 8))))
        case .bsf, .bsr, .tzcnt:
            return d.kind == .register && (s.kind == .register || s.kind == .memory) && (size == 2 || size == 4 || size == 8)
        case .shld, .shrd:
            // Registers and a non-zero immediate count (a zero count changes nothing, flags
            // included; a word's counts above 16 are the interpreter's).
            return d.kind == .register && s.kind == .register && insn.source2.kind == .immediate
                && (size == 4 || size == 8) && insn.immediate & (size == 8 ? 0x3f : 0x1f) != 0
        case .mul, .div:
            let width = s.size == 0 ? insn.operandSize : s.size
            return (s.kind == .register || s.kind == .memory) && (width == 4 || width == 8)
        case .idiv:
            let width = s.size == 0 ? insn.operandSize : s.size
            return (s.kind == .register || s.kind == .memory) && (width == 4 || width == 8)
        case .leave:
            return long && insn.operandSize == 8
        case .cmpxchg, .xadd:
            // On memory, as one host LOCK CMPXCHG / LOCK XADD through the host TLB (atomic
            // beside device threads and other vCPUs); anything else is left to the interpreter.
            return long && d.kind == .memory && s.kind == .register && sizeOK(size)
        case .stos, .movs:
            // REP STOS / REP MOVS with 64-bit addresses: a callout does whole runs of them. Not
            // from FS or GS: the callout would take the machine's base, which a translated
            // SWAPGS earlier in the same entry has not updated yet.
            return long && insn.prefixes.repetition != .none && insn.addressSize == 8
                && (insn.operation == .stos || (insn.memory.segment != 4 && insn.memory.segment != 5))
        case .jcc, .jmpRelative:
            if long { return insn.operandSize == 8 && isCanonical(branchTarget(insn, next: next, mode: mode)) }
            return insn.operandSize == (mode == .bits32 ? 4 : 2)
        case .callRelative:
            return long && insn.operandSize == 8 && isCanonical(branchTarget(insn, next: next, mode: mode))
        case .ret:
            return long && insn.operandSize == 8
        case .push:
            return long && insn.operandSize == 8 && (s.kind == .register || s.kind == .immediate || s.kind == .memory)
        case .pop:
            return long && insn.operandSize == 8 && d.kind == .register
        case .jmpIndirect, .callIndirect:
            return long && insn.operandSize == 8 && (s.kind == .register || s.kind == .memory)
        case .pushf:
            // Sensitive (it shows IF and IOPL at any CPL): translated, and counted in the context.
            return long && insn.operandSize == 8
        case .movSegment:
            // From a segment register (sensitive: it shows the CPL in CS's RPL); the other way
            // loads a descriptor and is the interpreter's.
            let width = d.size == 0 ? insn.operandSize : d.size
            return long && s.kind == .segment && s.index < 6
                && (d.kind == .memory || (d.kind == .register && (width == 2 || width == 4 || width == 8)))
        case .cli, .swapgs:
            return long
        case .sti:
            // Never a block's last instruction (`BTExecutor.decodeBlock` drops it there): the
            // instruction after it runs in the same block, before any interrupt can be taken,
            // which is the STI shadow.
            return long
        case .lfence, .sfence, .mfence:
            return true
        case .rdtsc, .rdtscp:
            // Linux reads the clock through them on every network packet.
            return long
        case .syscall:
            return long
        case .sysret:
            // To 64-bit code only (REX.W, Linux's sysretq); SYSRETL's compatibility mode is the
            // interpreter's.
            return long && insn.operandSize == 8
        default:
            return false
        }
    }

    /// Whether a block's decoding goes on at the target of `insn`, a direct JMP in 64-bit
    /// code to the page the block started on (so the block stays on one physical page, which
    /// invalidation relies on): the JMP costs nothing then, instead of a block end.
    static func followsJump(_ insn: DecodedInstruction, at rip: UInt64, mode: CodeMode, blockStart: UInt64) -> Bool {
        guard mode == .bits64, insn.operation == .jmpRelative, insn.operandSize == 8 else { return false }
        let next = rip &+ UInt64(insn.length)
        return branchTarget(insn, next: next, mode: mode) >> 12 == blockStart >> 12
    }

    /// The register a retpoline thunk jumps through, when `instructions[k...]` is the thunk's
    /// path as `BTExecutor.decodeBlock` gathers it: a CALL to 7 bytes past its end (over the
    /// PAUSE; LFENCE; JMP trap that only speculation runs), `mov [rsp], reg` and RET. Linux
    /// compiles every indirect call into a call of such a thunk (`__x86_indirect_thunk_rax`).
    /// Translated as they come, the RET never matches the host frame its CALL pushed, so each
    /// indirect call took a mispredicted return and a jump cache lookup on top of the jump.
    static func retpolineRegister(_ instructions: [GuestInstruction], at k: Int) -> UInt8? {
        guard k + 3 == instructions.count else { return nil }
        let call = instructions[k], move = instructions[k + 1], ret = instructions[k + 2]
        guard retpolineMoveRIP(call.insn, at: call.rip) == move.rip,
              ret.rip == move.rip &+ UInt64(move.insn.length) else { return nil }
        return retpolineTail(move.insn, ret.insn)
    }

    /// Where a retpoline thunk's MOV would be after `call` at `rip`: 7 bytes past the end of a
    /// 64-bit CALL that targets just there; nil for any other instruction.
    static func retpolineMoveRIP(_ call: DecodedInstruction, at rip: UInt64) -> UInt64? {
        guard call.operation == .callRelative, call.operandSize == 8 else { return nil }
        let next = rip &+ UInt64(call.length)
        let move = next &+ 7
        return branchTarget(call, next: next, mode: .bits64) == move ? move : nil
    }

    /// The register of `mov [rsp], reg` (64-bit) when `ret` is a plain near RET after it.
    static func retpolineTail(_ move: DecodedInstruction, _ ret: DecodedInstruction) -> UInt8? {
        let m = move.memory
        guard move.operation == .mov, move.operandSize == 8, move.destination.kind == .memory,
              move.source.kind == .register, m.base == 4, m.index == MemoryOperand.noRegister,
              m.displacement == 0, m.segment == 2, move.prefixes.repetition == .none,
              ret.operation == .ret, ret.operandSize == 8, ret.immediate == 0 else { return nil }
        return move.source.index
    }

    /// True for the instructions that end a block (they decide the next RIP).
    static func endsBlock(_ insn: DecodedInstruction) -> Bool {
        switch insn.operation {
        case .jcc, .jmpRelative, .callRelative, .ret, .jmpIndirect, .callIndirect, .syscall, .sysret: return true
        default: return false
        }
    }

    static func operationSize(_ insn: DecodedInstruction) -> UInt8 {
        let s = insn.destination.size
        return s == 0 || s > 8 ? insn.operandSize : s
    }

    static func isCanonical(_ address: UInt64) -> Bool {
        let top = Int64(bitPattern: address) >> 47
        return top == 0 || top == -1
    }

    static func instructionPointerMask(_ mode: CodeMode) -> UInt64 {
        switch mode {
        case .bits64: return .max
        case .bits32: return 0xffff_ffff
        case .bits16: return 0xffff
        }
    }

    static func branchTarget(_ insn: DecodedInstruction, next: UInt64, mode: CodeMode) -> UInt64 {
        (next &+ insn.immediate) & instructionPointerMask(mode)
    }

    static func mask(_ size: UInt8) -> UInt64 { size >= 8 ? .max : (1 << (UInt64(size) * 8)) &- 1 }

    // MARK: Emission

    private var e = X86Emitter()
    private let mode: CodeMode
    private let callouts: BTCallouts
    private let fast: BTFastPaths
    /// How a stop-before stub finds the guest's flags as they were before the instruction.
    /// `savedInRegion`: in `flagsInRegion`, as a region where they are dead saved them.
    enum FlagsAt { case savedBefore, inHost, savedInRegion }
    /// The stop-before stubs to emit after the body: where the flags are, and the cached guest
    /// registers to write back (none after a callout, which spilled them all).
    private var failures: [(label: Label, retired: Int, rip: UInt64, flags: FlagsAt,
                            writeBack: [(guest: UInt8, host: HostRegister)])] = []

    // Guest registers cached in host registers within the block. The first four are
    // caller-saved (reloaded after a callout), RBP callee-saved (the enter trampoline saves
    // it for the C caller). R14 is the instruction budget (`BTContext.budget`) throughout.
    private static let cacheRegisters: [HostRegister] = [.r8, .r9, .r10, .r11, .rbp]
    private static func clobberedByCalls(_ h: HostRegister) -> Bool { h == .r8 || h == .r9 || h == .r10 || h == .r11 }
    /// The host register holding each guest register, if any.
    private var hostFor = [HostRegister?](repeating: nil, count: 16)
    /// Guest registers whose cached value is newer than the context's.
    private var dirty = [Bool](repeating: false, count: 16)
    /// Cached guest registers, least recently used first.
    private var recency: [UInt8] = []

    /// The first instruction's RIP: exits to the same linear page (64-bit code, where CS has
    /// no base) can be linked.
    private let startRIP: UInt64
    private var chainSites: [ChainSite] = []

    private init(mode: CodeMode, callouts: BTCallouts, fast: BTFastPaths, startRIP: UInt64) {
        self.mode = mode
        self.callouts = callouts
        self.fast = fast
        self.startRIP = startRIP
    }

    /// Bytes from a block's entry to its body: where linked jumps land, the guest's flags
    /// already in the host's RFLAGS.
    static let bodyOffset: Int = {
        var t = BlockTranslator(mode: .bits64, callouts: BTCallouts(load: 0, store: 0, string: 0),
                                fast: BTFastPaths(loads: false, stores: false), startRIP: 0)
        t.prologue()
        return t.e.count
    }()

    /// Host code for `instructions` (each covered; only the last may end the block), which
    /// continue at `next` unless the last one branches. The code is entered by a jump (from the
    /// enter trampoline or another block's end) with R15 at the context block and the guest's
    /// flags in its `hostFlags`, and leaves by a jump to the next block or the exit trampoline.
    static func translate(_ instructions: [GuestInstruction], next: UInt64, mode: CodeMode,
                          callouts: BTCallouts, fast: BTFastPaths) -> TranslatedBlock? {
        var t = BlockTranslator(mode: mode, callouts: callouts, fast: fast, startRIP: instructions.first?.rip ?? next)
        t.flagsDeadBefore = Self.flagsDeadBefore(instructions)
        t.flagsLiveOnlyAtEnd = Self.flagsLiveOnlyAtEnd(instructions)
        t.prologue()
        var ended = false, retpoline = false
        for (k, g) in instructions.enumerated() {
            // A direct JMP before the last instruction was followed when the block was
            // decoded (`followsJump`): nothing to emit, it is only counted.
            if k < instructions.count - 1 && g.insn.operation == .jmpRelative { continue }
            if fast.loads, let register = retpolineRegister(instructions, at: k) {
                t.retpoline(g, through: register, retired: k)
                ended = true
                retpoline = true
                break
            }
            t.enterFlagRegion(g, at: k)
            ended = t.instruction(g, retired: k)
            if Self.writesAllStatusFlags(g.insn) { t.flagsSaved = false }
        }
        if !ended { t.exit(rip: next, retired: instructions.count) }
        t.epilogue()
        guard let code = t.e.finished() else { return nil }
        return TranslatedBlock(code: code, chainSites: t.chainSites, endsInRetpoline: retpoline)
    }

    // MARK: Regions where the guest's flags are dead
    //
    // Most memory accesses sit where the guest's status flags are about to be overwritten
    // (a load before its TEST or CMP). There a probe may use ordinary arithmetic (a shift and
    // an AND for the slot, ADDs for the tag and one untaken JNZ) instead of the flag-free
    // LEA/SHRX/PEXT/JRCXZ chain: shorter, and fewer cycles from address to data. The flags are
    // still the guest's if the access faults (the interpreter then raises the fault with them
    // in its frame), so the region's first access saves them once (LAHF and SETO, in
    // `flagsInRegion`), and every stop in the region takes them from there; its callouts go
    // through the access stubs' variants that neither save nor restore the host's flags.
    // Most other accesses sit in runs that touch no flag up to the block's CALL, RET or JMP;
    // there the same holds, and the exit puts the saved flags back (`restoreFlagsForExit`).

    /// For each instruction, whether the guest's status flags are dead before it within the
    /// block: it or a later one writes all six and reads none, and everything from it to that
    /// one touches no flag (so the block does not end in between).
    static func flagsDeadBefore(_ instructions: [GuestInstruction]) -> [Bool] {
        var dead = [Bool](repeating: false, count: instructions.count + 1)
        for k in stride(from: instructions.count - 1, through: 0, by: -1) {
            let insn = instructions[k].insn
            if writesAllStatusFlags(insn) {
                dead[k] = true
            } else if leavesStatusFlags(insn) && !endsBlock(insn) {
                dead[k] = dead[k + 1]
            }
        }
        return dead
    }

    /// For each instruction, whether nothing from it to the block's end touches a status flag:
    /// the rest are flag-free moves and stack operations, ended by a CALL, RET or JMP (or by
    /// the block's cut). Such a run may clobber the host's flags too, if the block's exit puts
    /// the guest's back first (`restoreFlagsForExit`): most accesses before a block's CALL, RET
    /// or JMP (a function's saves and restores of registers, its return address) are in one.
    static func flagsLiveOnlyAtEnd(_ instructions: [GuestInstruction]) -> [Bool] {
        var tail = [Bool](repeating: false, count: instructions.count + 1)
        tail[instructions.count] = true
        for k in stride(from: instructions.count - 1, through: 0, by: -1) {
            let insn = instructions[k].insn
            if k == instructions.count - 1 && endsBlock(insn) {
                switch insn.operation {
                case .callRelative, .callIndirect, .ret, .jmpRelative, .jmpIndirect: tail[k] = true
                default: tail[k] = false
                }
            } else {
                // A JMP before the last instruction was followed (nothing emitted).
                tail[k] = leavesStatusFlags(insn) && (!endsBlock(insn) || insn.operation == .jmpRelative) && tail[k + 1]
            }
        }
        return tail
    }

    /// Operations whose translation writes all six status flags and reads none.
    static func writesAllStatusFlags(_ insn: DecodedInstruction) -> Bool {
        switch insn.operation {
        case .add, .or, .and, .sub, .xor, .cmp, .test, .neg: return true
        default: return false
        }
    }

    /// Operations that neither read nor write a status flag.
    static func leavesStatusFlags(_ insn: DecodedInstruction) -> Bool {
        switch insn.operation {
        case .mov, .movzx, .movsx, .lea, .push, .pop, .nop, .bswap, .not, .xchg, .jmpRelative: return true
        default: return false
        }
    }

    /// Per instruction: `flagsDeadBefore` and `flagsLiveOnlyAtEnd` for this block.
    private var flagsDeadBefore: [Bool] = []
    private var flagsLiveOnlyAtEnd: [Bool] = []
    /// The guest's flags are in `flagsInRegion` and the host's RFLAGS may hold anything: inside a
    /// region, after its first access (until the instruction that writes them all, or the
    /// block's exit, which puts them back).
    private var flagsSaved = false

    /// At the start of instruction `k`: in a region (`flagsDeadBefore` or `flagsLiveOnlyAtEnd`),
    /// before its first memory access, the guest's flags saved (`flagsSaved`), which lets this
    /// instruction's and the region's later accesses clobber the host's.
    private mutating func enterFlagRegion(_ g: GuestInstruction, at k: Int) {
        guard !flagsSaved, fast.loads, mode == .bits64, k < flagsDeadBefore.count,
              flagsDeadBefore[k] || flagsLiveOnlyAtEnd[k] else { return }
        let insn = g.insn
        let touchesMemory = insn.destination.kind == .memory || insn.source.kind == .memory
            || insn.operation == .push || insn.operation == .pop
        guard touchesMemory, insn.operation != .lea, insn.operation != .nop else { return }
        // LAHF and SETO (RAX is free between instructions): a few cheap µops, where PUSHF
        // costs several cycles.
        e.loadStatusIntoAH()
        e.setcc(0, .rax)                                              // SETO AL
        e.store(.rax, disp: BTContext.flagsInRegion, size: 2)
        flagsSaved = true
    }

    /// At a block's exit, in a run where the guest's flags were saved and are live at the end
    /// (`flagsLiveOnlyAtEnd`): the saved flags back into the host's RFLAGS (ADD of the saved
    /// OF to 0x7f sets OF alone right, SAHF the other five), before anything leaves the block.
    /// Clobbers RAX (free at every exit: targets are in R13).
    private mutating func restoreFlagsForExit() {
        guard flagsSaved else { return }
        e.load(.rax, disp: BTContext.flagsInRegion)                   // AL = OF, AH = LAHF's byte
        e.aluImmediate(0, .rax, 0x7f, size: 1)                        // ADD al, 0x7f
        e.storeAHIntoStatus()
        flagsSaved = false
    }

    /// A block's entry: the guest's status flags into the host's RFLAGS.
    private mutating func prologue() {
        e.pushContext(disp: BTContext.hostFlags); e.popFlags()
    }

    /// The stop-before stubs: the cached registers written back, the flags as before the
    /// instruction, RIP at it, the instructions before it counted, and back to Swift.
    private mutating func epilogue() {
        for c in coldPaths {
            e.bind(c.miss)
            calloutThroughStub(store: c.store, info: c.info, refused: c.refused, keepSavedFlags: c.keepSavedFlags)
            if c.keepHost { e.moveImmediate(.r13, 0) }
            if !c.store && c.target != .rax { e.move(c.target, .rax) }
            e.jmp(c.done)
        }
        for f in failures where e.isReferenced(f.label) {
            e.bind(f.label)
            for w in f.writeBack { e.store(w.host, disp: BTContext.register(w.guest), size: 8) }
            switch f.flags {
            case .savedBefore:
                e.load(.rax, disp: BTContext.flagsBefore)
                e.store(.rax, disp: BTContext.hostFlags, size: 8)
            case .savedInRegion:
                // AH's status flags (bit 1 set, as RFLAGS has it) and OF at bit 11.
                e.loadByte(.rax, disp: BTContext.flagsInRegion + 1)
                e.loadByte(.rcx, disp: BTContext.flagsInRegion)
                e.shift64(4, .rcx, by: 11)
                e.alu(1, .rax, .rcx, size: 8)                         // OR
                e.store(.rax, disp: BTContext.hostFlags, size: 8)
            case .inHost:
                e.pushFlags(); e.popContext(disp: BTContext.hostFlags)
            }
            e.moveImmediate(.rax, f.rip)
            e.store(.rax, disp: BTContext.rip, size: 8)
            e.leaOffset(.r14, .r14, -Int32(f.retired))
            e.jumpThroughContext(disp: BTContext.exitAddress)
        }
    }

    /// Ends the block: RIP = `rip`, `retired` instructions done (cached registers written back
    /// first unless the caller did).
    private mutating func exit(rip: UInt64, retired: Int, writeBack: Bool = true, alwaysCheckBudget: Bool = false) {
        restoreFlagsForExit()
        if writeBack { writeBackAll() }
        if fast.loads && mode == .bits64 && rip >> 12 == startRIP >> 12 {
            // Linkable (same page): the instructions counted against the budget with
            // flag-free instructions, then a jump patched to the target's body once that block
            // exists (the guest's flags still in the host's RFLAGS); until then it goes on to
            // the jump cache lookup. A spent budget goes back to Swift.
            //
            // Only links back (to a block starting at or before this one's start) look at the
            // budget: every cycle of links has one, since forward links only climb the page, so
            // a spent budget still stops the code within a page's worth of forward links (and
            // the jump cache lookup, the other way out of a block, always looks). The check
            // was a quarter of a typical block end's instructions.
            let spent = e.makeLabel()
            e.leaOffset(.r14, .r14, -Int32(retired))
            if alwaysCheckBudget || rip <= startRIP {
                budgetSpent(into: .rcx)
                e.unlessRCXZero(jumpTo: spent)
            }
            let fastJump = e.patchableJump()                        // until linked: on to the lookup
            chainSites.append(ChainSite(target: rip, fastJump: fastJump))
            e.moveImmediate(.rax, rip)
            chain(retired: 0)
            guard e.isReferenced(spent) else { return }
            e.bind(spent)
            e.moveImmediate(.rax, rip)
            e.store(.rax, disp: BTContext.rip, size: 8)
            e.pushFlags(); e.popContext(disp: BTContext.hostFlags)
            e.jumpThroughContext(disp: BTContext.exitAddress)
            return
        }
        e.moveImmediate(.rax, rip)
        chain(retired: retired)
    }

    /// Ends the block with RIP taken from R13. With `canonicalCheck` (an indirect JMP: the
    /// instruction's number and RIP), a target that is not canonical stops the block before the
    /// instruction instead; it is checked only where the jump cache missed, since a hit's tag
    /// is a canonical RIP's.
    private mutating func exitToR13(retired: Int, canonicalCheck: (retired: Int, rip: UInt64)? = nil) {
        restoreFlagsForExit()
        writeBackAll()
        if fast.loads {
            chain(retired: retired, target: .r13, canonicalCheck: canonicalCheck)
        } else {
            e.move(.rax, .r13)
            chain(retired: retired)
        }
    }

    // MARK: The register cache

    /// Writes every dirty cached register back to the context (flags untouched; the cache's
    /// state does not change: the code after may still be on a path that did not write back).
    private mutating func writeBackAll() {
        for g in recency where dirty[Int(g)] {
            if let h = hostFor[Int(g)] { e.store(h, disp: BTContext.register(g), size: 8) }
        }
    }

    /// A call into Swift at `address` with (context, `argument`), which may change any guest
    /// register in the context: the flags saved around it (`flagsBefore`, which a refusal's stop
    /// takes), every dirty cached register spilled before and every cached one reloaded after.
    /// Its result is in RCX.
    private mutating func callOut(_ address: UInt64, argument: UInt64) {
        saveFlags()
        spillForCall()
        e.leaOffset(.rdi, .r15, -X86Emitter.contextBias)  // the context block
        e.moveImmediate(.rsi, argument)
        e.moveImmediate(.rax, address)
        e.call(.rax)
        e.move(.rcx, .rax)
        for g in recency { if let h = hostFor[Int(g)] { e.load(h, disp: BTContext.register(g)) } }
        restoreFlags()
    }

    /// Before a callout: dirty registers to the context, so a refusal needs no write-back.
    private mutating func spillForCall() { writeBackAll() }

    /// After a callout returned: the caller-saved cache registers reloaded.
    private mutating func reloadAfterCall() {
        for g in recency {
            if let h = hostFor[Int(g)], Self.clobberedByCalls(h) { e.load(h, disp: BTContext.register(g)) }
        }
    }

    private var dirtyCached: [(guest: UInt8, host: HostRegister)] {
        recency.compactMap { g in dirty[Int(g)] ? hostFor[Int(g)].map { (g, $0) } : nil }
    }

    private mutating func touch(_ g: UInt8) {
        if let i = recency.firstIndex(of: g) { recency.remove(at: i) }
        recency.append(g)
    }

    /// A host register for guest register `g` (evicting the least recently used one, written
    /// back if dirty, when all are taken); loaded from the context when `load`.
    private mutating func cache(_ g: UInt8, load: Bool) -> HostRegister {
        if let h = hostFor[Int(g)] { touch(g); return h }
        let h: HostRegister
        if let free = Self.cacheRegisters.first(where: { candidate in !hostFor.contains { $0 == candidate } }) {
            h = free
        } else {
            let victim = recency.removeFirst()
            h = hostFor[Int(victim)] ?? .r8
            if dirty[Int(victim)] { e.store(h, disp: BTContext.register(victim), size: 8) }
            hostFor[Int(victim)] = nil
            dirty[Int(victim)] = false
        }
        hostFor[Int(g)] = h
        dirty[Int(g)] = false
        recency.append(g)
        if load { e.load(h, disp: BTContext.register(g)) }
        return h
    }

    /// Drops guest register `g` from the cache (written back if dirty), for accesses that go
    /// to the context directly (AH, CH, DH, BH).
    private mutating func uncache(_ g: UInt8) {
        guard let h = hostFor[Int(g)] else { return }
        if dirty[Int(g)] { e.store(h, disp: BTContext.register(g), size: 8) }
        hostFor[Int(g)] = nil
        dirty[Int(g)] = false
        recency.removeAll { $0 == g }
    }

    /// All 64 bits of guest register `g` into `dst`.
    private mutating func guestValue(into dst: HostRegister, _ g: UInt8) {
        let h = cache(g & 15, load: true)
        e.move(dst, h)
    }

    /// Writes the low `size` bytes of `reg` to guest register `g` with the architecture's rule:
    /// 32-bit writes clear bits 63:32, 8- and 16-bit writes keep the rest.
    private mutating func setGuest(_ g: UInt8, from reg: HostRegister, size: UInt8) {
        let g = g & 15
        let h = cache(g, load: size < 4)
        switch size {
        case 8: e.move(h, reg)
        case 4: e.registerForm(Opcode(0x89), size: 4, reg: reg.rawValue, rm: h)
        default: e.registerForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: reg.rawValue, rm: h)
        }
        dirty[Int(g)] = true
    }

    /// The end of a block with the next RIP in `target` (RAX without BMI2): counts the
    /// instructions, and jumps straight to the next block when the jump cache has it and the
    /// budget allows; otherwise saves the flags and RIP and returns to Swift.
    private mutating func chain(retired: Int, target: HostRegister = .rax,
                                canonicalCheck: (retired: Int, rip: UInt64)? = nil) {
        restoreFlagsForExit()
        let toSwift = e.makeLabel()
        guard fast.loads else {
            // Without BMI2: the flags saved first, then the lookup with ordinary arithmetic.
            e.pushFlags(); e.popContext(disp: BTContext.hostFlags)
            e.store(.rax, disp: BTContext.rip, size: 8)
            e.registerForm(Opcode(0x81), size: 8, reg: 5, rm: .r14); e.u32(UInt32(retired))  // SUB r14, retired
            e.jcc(8, toSwift)    // S: the budget is spent
            e.move(.rdx, .rax)
            e.registerForm(Opcode(0xc1), size: 8, reg: 5, rm: .rdx); e.byte(12)  // SHR rdx, 12
            e.alu(0, .rdx, .rax, size: 8)                                 // ADD rdx, rax
            e.and32(.rdx, UInt32(BTContext.jumpCacheEntries - 1))
            e.alu(0, .rdx, .rdx, size: 8)
            e.alu(0, .rdx, .rdx, size: 8)                                 // rdx * 4: the slot's word
            e.load(.rcx, disp: BTContext.jumpGeneration)
            e.alu(0, .rcx, .rax, size: 8)                                 // ADD rcx, rax: the tag
            e.contextTableForm(Opcode(0x03), size: 8, reg: HostRegister.rcx.rawValue, index: .rdx,
                               disp: BTContext.jumpTags)                  // ADD rcx, stored (negated) tag
            e.jcc(5, toSwift)    // NE: not this RIP
            e.jumpThroughTable(index: .rdx, disp: BTContext.jumpBodies)
            e.bind(toSwift)
            e.jumpThroughContext(disp: BTContext.exitAddress)
            return
        }
        // With BMI2 nothing here touches the flags: the guest's stay in the host's RFLAGS and
        // the jump lands in the next block's body, past its flag-loading prologue.
        let found = e.makeLabel(), foundVictim = e.makeLabel()
        if retired != 0 { e.leaOffset(.r14, .r14, -Int32(retired)) }
        budgetSpent(into: .rcx)
        e.unlessRCXZero(jumpTo: toSwift)
        // The slot (`BTContext.jumpSlot`): pext(rip + rip >> 12, entries - 1).
        e.moveImmediate(.rcx, 12)
        e.shrx(.rdx, target, count: .rcx)
        e.leaSum(.rdx, base: .rdx, index: target, scale: 1)
        e.pext(.rdx, .rdx, maskAt: BTContext.jumpIndexMask)
        e.leaScaled(.rdx, index: .rdx, scale: 4)                    // the slot's word (`jumpWord`)
        // The tag wanted, RIP + generation, plus the slot's negated one: zero on a hit. Then
        // the same with the victim way's.
        for (way, hit) in [(BTContext.jumpTags, found), (BTContext.jumpVictimTags, foundVictim)] {
            e.load(.rcx, disp: BTContext.jumpGeneration)
            e.leaSum(.rcx, base: .rcx, index: target, scale: 1)
            e.loadTable(.rsi, index: .rdx, disp: way)
            e.leaSum(.rcx, base: .rcx, index: .rsi, scale: 1)
            e.jrcxz(hit)
        }
        e.bind(toSwift)
        if let check = canonicalCheck {
            // Not canonical: the instruction faults. Its count given back, the block stops
            // before it (the registers are as before it: an indirect JMP changes only RIP).
            let fault = failure(retired: check.retired, rip: check.rip, flags: .inHost, afterCall: false)
            let ok = e.makeLabel()
            canonicalDistance(of: target)
            e.jrcxz(ok)
            e.leaOffset(.r14, .r14, Int32(retired))
            e.jmp(fault)
            e.bind(ok)
        }
        // A miss or a spent budget: the stub asks Swift for the block (or returns to Swift).
        e.store(target, disp: BTContext.rip, size: 8)
        e.pushFlags(); e.popContext(disp: BTContext.hostFlags)
        e.jumpThroughContext(disp: BTContext.missStub)
        e.bind(found)
        e.jumpThroughTable(index: .rdx, disp: BTContext.jumpBodies)
        e.bind(foundVictim)
        e.jumpThroughTable(index: .rdx, disp: BTContext.jumpVictimBodies)
    }

    // MARK: Returns through the host's stack
    //
    // A guest RET is an indirect jump whose target changes with the caller; through the jump
    // cache, every RET of a function ends at the same host indirect jump, which the host
    // predicts badly (a quarter of translated code's time during a TCP transfer landed on the
    // first instruction after such jumps, perf). So a translated CALL makes a host CALL too,
    // and the guest RET that returns to where it pushed makes a host RET, which the host's
    // return stack predicts. The host CALL pushes the guest return address (plus the jump cache
    // generation: the view the CALL ran in) and then its own return address, which leads to
    // code in the calling block that goes on at the guest return address. A RET compares its
    // target with the top frame's guest return address: equal, a host RET; else (a return
    // address the guest changed, a switch of stacks, a frame of another CPL's view) the jump
    // cache, leaving the frame. Frames never outlive an entry (the exit trampoline puts RSP
    // back at `hostStackBase`; two bottom frames hold slots no RET matches, so that a RET
    // reads only frames), nor, therefore, a change of mapping or the code they return to
    // (blocks are dropped and the cache emptied only between entries; a lookup that empties
    // the cache returns to Swift). Each frame is 16 bytes, which keeps RSP 16-byte aligned for
    // callouts, and there are at most as many as the entry's budget has instructions (8192:
    // 128 KiB of the vCPU thread's stack).

    /// A CALL's end, its return address `returnRIP` already on the guest's stack and the
    /// registers written back: counts the instructions, pushes the frame's guest return
    /// address (plus the view's jump cache generation), and host-CALLs `toCallee`'s code (the
    /// jump to the callee); the host's return lands after the CALL, pops that slot and goes on
    /// at `returnRIP` (linked when on this page).
    private mutating func callExit(returnRIP: UInt64, retired: Int, toCallee: (inout BlockTranslator) -> Void) {
        restoreFlagsForExit()
        writeBackAll()
        e.leaOffset(.r14, .r14, -Int32(retired))
        e.moveImmediate(.rax, returnRIP)
        e.load(.rcx, disp: BTContext.jumpGeneration)
        e.leaSum(.rax, base: .rax, index: .rcx, scale: 1)
        e.push(.rax)
        let callee = e.makeLabel()
        e.call(callee)
        // The host RET lands here, the guest's flags in the host's RFLAGS (flag-free from here).
        e.leaOffset(.rsp, .rsp, 8)
        // Checked even forward: host RETs do not look at the budget, so without this a spent
        // budget could go on through every frame's return.
        exit(rip: returnRIP, retired: 0, writeBack: false, alwaysCheckBudget: true)
        e.bind(callee)
        toCallee(&self)
    }

    /// A RET's end, its target in R13 (canonical) and RSP moved past it: a host RET when the
    /// top host-stack frame was pushed for this return address in this view, else the jump
    /// cache.
    private mutating func returnThroughHostStack(retired: Int) {
        restoreFlagsForExit()
        writeBackAll()
        e.leaOffset(.r14, .r14, -Int32(retired))
        e.load(.rdx, disp: BTContext.jumpGeneration)
        frameDistance(slotAt: 8)
        let other = e.makeLabel(), below = e.makeLabel()
        e.unlessRCXZero(jumpTo: other)
        e.ret()
        // The frame below, when the top one was left by a return that did not come back to it:
        // a retpoline (`call 1f; ...; 1: mov %rax, (%rsp); ret`, every indirect call of a
        // Linux built with them) returns to RAX, not to its CALL's frame, and the function it
        // called then returns to the frame below. That one returns and the stale one is dropped.
        e.bind(other)
        frameDistance(slotAt: 24)
        e.unlessRCXZero(jumpTo: below)
        e.leaOffset(.rsp, .rsp, 16)
        e.ret()
        e.bind(below)
        chain(retired: 0, target: .r13)
    }

    /// RCX = R13 (the RET's target) + RDX (the jump cache generation) - the host-stack slot at
    /// [RSP + `disp`], flag-free: zero when that frame was pushed for this return in this view.
    private mutating func frameDistance(slotAt disp: Int8) {
        e.load(.rcx, base: .rsp, disp: disp)
        e.unary(2, .rcx, size: 8)                                   // NOT
        e.leaSum(.rcx, base: .rcx, index: .r13, scale: 1, disp: 1)
        e.leaSum(.rcx, base: .rcx, index: .rdx, scale: 1)
    }

    /// RCX = `reg` minus `reg` sign-extended from bit 47: zero when it is canonical. Flag-free
    /// (BMI2); clobbers RDX.
    private mutating func canonicalDistance(of reg: HostRegister) {
        e.moveImmediate(.rcx, 16)
        e.shlx(.rdx, reg, count: .rcx)
        e.sarx(.rdx, .rdx, count: .rcx)
        e.move(.rcx, .rdx)
        e.unary(2, .rcx, size: 8)                                   // NOT
        e.leaSum(.rcx, base: .rcx, index: reg, scale: 1, disp: 1)   // reg - sign-extended reg
    }

    /// `reg` = 0 unless R14, the budget, is below zero (spent), with BMI2's flag-free shift of
    /// the sign bit. Clobbers RDX.
    private mutating func budgetSpent(into reg: HostRegister) {
        e.moveImmediate(.rdx, 63)
        e.shrx(reg, .r14, count: .rdx)
    }

    /// A label that stops the block before instruction number `retired` (at `rip`). From a
    /// callout (`afterCall`) the registers are already in the context; elsewhere the dirty
    /// cached ones are written back.
    private mutating func failure(retired: Int, rip: UInt64, flags: FlagsAt = .savedBefore, afterCall: Bool = true) -> Label {
        let l = e.makeLabel()
        // In a dead region the host's flags may be clobbered; the guest's are in `flagsInRegion`.
        failures.append((l, retired, rip, flagsSaved ? .savedInRegion : flags, afterCall ? [] : dirtyCached))
        return l
    }

    /// Jumps to `fail` when the CPL is above RFLAGS.IOPL (CLI and STI then raise #GP). Flags
    /// untouched; clobbers RAX, RCX, RDX.
    private mutating func stopUnlessIOPLAllows(_ fail: Label) {
        e.load(.rax, disp: BTContext.rflags)
        e.pext(.rax, .rax, maskAt: BTContext.ioplMask)   // IOPL
        e.load(.rcx, disp: BTContext.cpl)
        e.leaSum(.rcx, base: .rax, index: .rcx, scale: 4) // CPL * 4 + IOPL
        e.moveImmediate(.rdx, BTContext.ioplTooLow)
        e.shrx(.rdx, .rdx, count: .rcx)
        e.moveImmediate(.rcx, 63)
        e.shlx(.rcx, .rdx, count: .rcx)                  // that bit alone (at bit 63)
        e.unlessRCXZero(jumpTo: fail)
    }

    /// BSF, BSR, TZCNT as the interpreter makes them: the defined flags from the host's
    /// instruction, the undefined ones kept (the host's would differ from the interpreter's).
    /// BSF and BSR of zero set ZF and leave the destination whole; TZCNT sets CF (zero source)
    /// and ZF (zero count).
    private mutating func bitScan(_ g: GuestInstruction, retired k: Int, size: UInt8) {
        let insn = g.insn, d = insn.destination, s = insn.source
        if s.kind == .memory {
            let fail = failure(retired: k, rip: g.rip)
            address(insn, rip: g.rip)
            loadAccess(segment: accessSegment(insn), size: size, fail: fail)  // zero-extended
        } else {
            read(s, insn, into: .rax, size: size)
            e.zeroExtend(.rax, from: size)
        }
        saveFlags()
        if insn.operation == .tzcnt {
            e.byte(0xf3)
            e.registerForm(Opcode(0x0f, 0xbc), size: size, reg: HostRegister.rdx.rawValue, rm: .rax)  // TZCNT rdx, rax
            e.setcc(2, .rbx)                                  // CF: the source was zero
            e.setcc(4, .rcx)                                  // ZF: the count is zero
            e.zeroExtend(.rbx, from: 1)
            e.zeroExtend(.rcx, from: 1)
            e.shift64(4, .rcx, by: 6)
            e.alu(1, .rbx, .rcx, size: 8)
            write(d, from: .rdx, size: size)
            mergeStatusFlags(from: .rbx, mask: 0x41)
            return
        }
        // On the zero-extended source at 64 bits: the same index for every size.
        guestValue(into: .rcx, d.index)
        e.registerForm(Opcode(0x0f, insn.operation == .bsf ? 0xbc : 0xbd), size: 8, reg: HostRegister.rdx.rawValue, rm: .rax)
        e.setcc(4, .rbx)                                      // ZF: the source was zero
        if size == 2 {
            // A word result keeps the register's other bits.
            e.move(.rsi, .rcx)
            e.aluImmediate(4, .rsi, 0xffff_0000, size: 8)     // AND: all but the low word
            e.alu(1, .rdx, .rsi, size: 8)
        }
        e.test(.rbx, .rbx, size: 1)
        e.cmovcc(5, .rdx, .rcx, size: 8)                      // zero source: the register as it was
        setGuest(d.index, from: .rdx, size: 8)
        e.zeroExtend(.rbx, from: 1)
        e.shift64(4, .rbx, by: 6)
        mergeStatusFlags(from: .rbx, mask: 0x40)
    }

    /// SHLD, SHRD by a non-zero immediate on registers: the host's result, CF, SF, ZF and PF;
    /// OF from the sign's change (the interpreter's choice for every count, where the host's
    /// is undefined beyond 1) and AF clear.
    private mutating func doubleShift(_ g: GuestInstruction, size: UInt8) {
        let insn = g.insn
        guestValue(into: .rax, insn.destination.index)
        guestValue(into: .rcx, insn.source.index)
        e.move(.rdx, .rax)
        e.registerForm(Opcode(0x0f, insn.operation == .shld ? 0xa4 : 0xac), size: size,
                       reg: HostRegister.rcx.rawValue, rm: .rax)
        e.byte(UInt8(truncatingIfNeeded: insn.immediate))
        saveFlags()
        e.alu(6, .rdx, .rax, size: 8)                         // XOR: the bits that changed
        e.shift64(5, .rdx, by: UInt8(size) * 8 - 1)           // SHR: the sign's change to bit 0
        e.and32(.rdx, 1)
        e.shift64(4, .rdx, by: 11)                            // OF
        write(insn.destination, from: .rax, size: size)
        mergeStatusFlags(from: .rdx, mask: 0x810)
    }

    /// The saved flags (`saveFlags`) with the bits of `mask` replaced by `bits`' into the host's
    /// RFLAGS. Clobbers RAX.
    private mutating func mergeStatusFlags(from bits: HostRegister, mask: UInt32) {
        e.load(.rax, disp: BTContext.flagsBefore)
        e.aluImmediate(4, .rax, ~UInt64(mask), size: 8)       // AND
        e.alu(1, .rax, bits, size: 8)                         // OR
        e.store(.rax, disp: BTContext.flagsBefore, size: 8)
        restoreFlags()
    }

    private mutating func saveFlags(to slot: Int32 = BTContext.flagsBefore) {
        e.pushFlags(); e.popContext(disp: slot)
    }

    private mutating func restoreFlags(from slot: Int32 = BTContext.flagsBefore) {
        e.pushContext(disp: slot); e.popFlags()
    }

    // MARK: Operands

    /// A register or immediate operand's value into `reg` (all 64 bits of a register; the
    /// operation then uses the low `size` bytes).
    private mutating func read(_ o: Operand, _ insn: DecodedInstruction, into reg: HostRegister, size: UInt8) {
        switch o.kind {
        case .register: guestValue(into: reg, o.index)
        case .highByte:
            uncache(o.index)
            e.loadByte(reg, disp: BTContext.register(o.index) + 1)
        default: e.moveImmediate(reg, insn.immediate & Self.mask(size))
        }
    }

    /// Writes the low `size` bytes of `reg` to register operand `o` with the architecture's
    /// rule: 32-bit writes clear bits 63:32, 8- and 16-bit writes keep the rest.
    private mutating func write(_ o: Operand, from reg: HostRegister, size: UInt8) {
        if o.kind == .highByte {
            uncache(o.index)
            e.store(reg, disp: BTContext.register(o.index) + 1, size: 1)
            return
        }
        setGuest(o.index, from: reg, size: size)
    }

    /// The memory operand's offset (effective address) into R12, at the address size: one
    /// LEA from the host registers caching the base and index when the displacement fits.
    /// Plus FS's or GS's base when the access goes inline (`accessSegment`), unless
    /// `offsetOnly` (LEA). Clobbers RCX.
    private mutating func address(_ insn: DecodedInstruction, rip: UInt64, offsetOnly: Bool = false) {
        let m = insn.memory
        var displacement = UInt64(bitPattern: m.displacement)
        if m.base == MemoryOperand.ripRelative { displacement = displacement &+ rip &+ UInt64(insn.length) }
        let hasBase = m.base != MemoryOperand.noRegister && m.base != MemoryOperand.ripRelative
        let hasIndex = m.index != MemoryOperand.noRegister
        let base = hasBase ? cache(m.base & 15, load: true) : nil
        let index = hasIndex ? cache(m.index & 15, load: true) : nil
        let short = Int64(bitPattern: displacement) == Int64(Int32(truncatingIfNeeded: displacement))
        if short {
            e.lea(.r12, base: base, index: index, scale: m.scale, disp: Int32(truncatingIfNeeded: displacement))
        } else {
            e.moveImmediate(.r12, displacement)
            if let base { e.leaSum(.r12, base: .r12, index: base, scale: 1) }
            if let index { e.leaSum(.r12, base: .r12, index: index, scale: m.scale) }
        }
        if insn.addressSize == 4 { e.zeroExtend32(.r12) } else if insn.addressSize == 2 { e.zeroExtend(.r12, from: 2) }
        if !offsetOnly && addsSegmentBase(m.segment) {
            // 64-bit mode: linear = base + offset, wrapping at 2^64 (the canonical check is the
            // access's, as for any other offset).
            e.load(.rcx, disp: BTContext.segmentBase(m.segment))
            e.leaSum(.r12, base: .r12, index: .rcx, scale: 1)
        }
    }

    /// Whether this block adds `segment`'s base to the offset itself: FS and GS in 64-bit code
    /// with the inline paths (their base is in the context). The access then goes through the
    /// host TLB, and through the callouts as DS, whose base 64-bit mode ignores.
    private func addsSegmentBase(_ segment: UInt8) -> Bool {
        fast.loads && mode == .bits64 && (segment == 4 || segment == 5)
    }

    /// The segment an access to `insn`'s memory operand goes through once `address` has made
    /// R12: DS when it added FS's or GS's base, else the operand's own.
    private func accessSegment(_ insn: DecodedInstruction) -> UInt8 {
        addsSegmentBase(insn.memory.segment) ? UInt8(X86CPU.ds) : insn.memory.segment
    }

    /// Whether a two-operand ALU instruction can work on the host register caching its
    /// destination: a register destination (not AH-BH) and a register (not AH-BH) or
    /// immediate source (one that fits a host immediate).
    private func inPlace(_ insn: DecodedInstruction, size: UInt8) -> Bool {
        let d = insn.destination, s = insn.source
        guard d.kind == .register else { return false }
        if s.kind == .register { return true }
        guard s.kind == .immediate else { return false }
        return size != 8 || Int64(bitPattern: insn.immediate) == Int64(Int32(truncatingIfNeeded: insn.immediate))
    }

    // MARK: Memory accesses

    /// Whether accesses through `segment` may probe the host TLB inline: 64-bit code (the
    /// offset is the linear address) and a segment without a base (FS and GS come here as DS,
    /// their base added: `accessSegment`).
    private func inline(_ segment: UInt8) -> Bool {
        fast.loads && mode == .bits64 && segment != 4 && segment != 5
    }

    /// Probes the host TLB for `size` bytes at linear R12 (read or write tag); on a hit RSI holds
    /// the addend (host = linear + addend), on a miss (or an access crossing a page: the tag is
    /// compared with the page of the last byte, the index taken from the first) goes to `miss`.
    /// Flags untouched (but clobbered in a dead region: `clobberingProbe`); clobbers RCX, RDX, RSI.
    private mutating func probe(size: UInt8, write: Bool, miss: Label) {
        if flagsSaved {
            clobberingProbe(size: size, write: write, miss: miss)
            return
        }
        e.moveImmediate(.rcx, 12)
        e.leaOffset(.rdx, .r12, Int32(size - 1))  // LEA rdx, [r12 + size-1]
        e.shrx(.rdx, .rdx, count: .rcx)   // page of the last byte
        e.pext(.rsi, .r12, maskAt: BTContext.tlbIndexMask)  // the slot, from the first byte's page
        e.leaScaled(.rsi, index: .rsi, scale: 4)            // its first word (`tlbWord`)
        e.load(.rcx, disp: BTContext.tlbGeneration)
        e.leaSum(.rdx, base: .rdx, index: .rcx, scale: 1)  // + generation: the tag to match
        e.loadTable(.rcx, index: .rsi, disp: write ? BTContext.tlbWriteTags : BTContext.tlbReadTags)
        e.leaSum(.rcx, base: .rcx, index: .rdx, scale: 1)  // tag wanted + stored (negated) tag
        e.unlessRCXZero(jumpTo: miss)
        e.loadTable(.rsi, index: .rsi, disp: BTContext.tlbAddends)
    }

    /// `probe` in a dead region, where the host's flags may be clobbered: the page of the last
    /// byte, the slot's byte offset from the first byte's page ((R12 >> 7) AND the slots' bits:
    /// `tlbWord` * 8), the generation and the stored (negated) tag added, and JNZ to `miss`.
    private mutating func clobberingProbe(size: UInt8, write: Bool, miss: Label) {
        if size == 1 { e.move(.rdx, .r12) } else { e.leaOffset(.rdx, .r12, Int32(size - 1)) }
        e.shift64(5, .rdx, by: 12)                                   // SHR: page of the last byte
        e.move(.rsi, .r12)
        e.shift64(5, .rsi, by: 7)
        e.and32(.rsi, UInt32(BTContext.hostTLBEntries - 1) << 5)      // the slot's byte offset
        e.addFromContext(.rdx, disp: BTContext.tlbGeneration)
        e.contextTableForm(Opcode(0x03), size: 8, reg: HostRegister.rdx.rawValue, index: .rsi,
                           disp: write ? BTContext.tlbWriteTags : BTContext.tlbReadTags, scale: 1)
        e.jcc(5, miss)                                               // NE: another page, or none
        e.contextTableForm(Opcode(0x8b), size: 8, reg: HostRegister.rsi.rawValue, index: .rsi,
                           disp: BTContext.tlbAddends, scale: 1)
    }

    /// Loads `size` bytes at segment:R12 into RAX (zero-extended). With `keepHost` (the load of
    /// a read-modify-write, `forWrite`), R13 is left holding the host address, or 0 when the
    /// access went through the callout, for `storeBack`. Stops before the instruction when the
    /// machine refuses the access. Flags kept (outside a dead region); caller-saved registers clobbered.
    private mutating func loadAccess(segment: UInt8, size: UInt8, forWrite: Bool = false, keepHost: Bool = false,
                                     into target: HostRegister = .rax, fail: Label) {
        let info = BTCallouts.info(segment: segment, size: size, forWrite: forWrite)
        let refused = refusal(from: fail)
        guard inline(segment) && (!forWrite || fast.stores) else {
            calloutThroughStub(store: false, info: info, refused: refused)
            if keepHost { e.moveImmediate(.r13, 0) }
            if target != .rax { e.move(target, .rax) }
            return
        }
        let miss = e.makeLabel(), done = e.makeLabel()
        probe(size: size, write: forWrite, miss: miss)
        if keepHost { e.leaSum(.r13, base: .r12, index: .rsi, scale: 1) }
        e.loadIndexed(target, base: .r12, index: .rsi, size: size)
        e.bind(done)
        coldPaths.append(ColdPath(miss: miss, done: done, refused: refused, info: info, store: false,
                                  target: target, keepHost: keepHost, keepSavedFlags: flagsSaved))
    }

    /// Stores the low `size` bytes of RBX at segment:R12. Stops before the instruction when the
    /// machine refuses it (nothing written). Flags kept (outside a dead region); caller-saved registers clobbered.
    private mutating func storeAccess(segment: UInt8, size: UInt8, fail: Label) {
        let info = BTCallouts.info(segment: segment, size: size)
        let refused = refusal(from: fail)
        guard inline(segment) && fast.stores else {
            calloutThroughStub(store: true, info: info, refused: refused)
            return
        }
        let miss = e.makeLabel(), done = e.makeLabel()
        probe(size: size, write: true, miss: miss)
        e.storeIndexed(.rbx, base: .r12, index: .rsi, size: size)
        e.bind(done)
        coldPaths.append(ColdPath(miss: miss, done: done, refused: refused, info: info, store: true,
                                  target: .rax, keepHost: false, keepSavedFlags: flagsSaved))
    }

    /// A load or store through the shared stub (`BTExecutor.accessStub`): on to `refused` when
    /// the machine refuses it, else on past this code (a load's value in RAX).
    private mutating func calloutThroughStub(store: Bool, info: UInt64, refused: Label, keepSavedFlags: Bool? = nil) {
        e.moveImmediate(.rdx, info)
        if keepSavedFlags ?? flagsSaved {
            e.callThroughContext(disp: store ? BTContext.storeStubKeepingFlags : BTContext.loadStubKeepingFlags)
        } else {
            e.callThroughContext(disp: store ? BTContext.storeStub : BTContext.loadStub)
        }
        e.unlessRCXZero(jumpTo: refused)
    }

    /// A stop before the same instruction as `fail` (made at its start), for a jump from here:
    /// it writes back the cached registers that are dirty now (nothing was spilled).
    private mutating func refusal(from fail: Label) -> Label {
        // The most recent failures are this instruction's: search from the end.
        guard let f = failures.last(where: { $0.label.id == fail.id }) else { return fail }
        let l = e.makeLabel()
        failures.append((l, f.retired, f.rip, flagsSaved ? .savedInRegion : .savedBefore, dirtyCached))
        return l
    }

    /// A load or store whose host TLB probe missed, emitted after the block's body so that the
    /// hits run straight through.
    struct ColdPath {
        let miss: Label, done: Label, refused: Label
        let info: UInt64
        let store: Bool
        let target: HostRegister
        let keepHost: Bool
        /// Made in a dead region: the callout neither saves nor restores the host's flags.
        var keepSavedFlags = false
    }
    private var coldPaths: [ColdPath] = []

    /// The store of a read-modify-write: RAX's low `size` bytes to the host address in R13
    /// (from `loadAccess(keepHost:)`), or through the callout when R13 is 0. The flags the
    /// operation produced are kept; a refusal stops before the instruction with the flags the
    /// load's callout saved.
    private mutating func storeBack(segment: UInt8, size: UInt8, fail: Label) {
        let direct = e.makeLabel(), done = e.makeLabel()
        e.move(.rcx, .r13)
        e.unlessRCXZero(jumpTo: direct)
        saveFlags(to: BTContext.flagsAfter)
        storeCallout(segment: segment, size: size, value: .rax, fail: fail)
        restoreFlags(from: BTContext.flagsAfter)
        e.jmp(done)
        e.bind(direct)
        e.baseForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: HostRegister.rax.rawValue, base: .r13, disp: 0)
        e.bind(done)
    }

    private mutating func storeCallout(segment: UInt8, size: UInt8, value: HostRegister, fail: Label) {
        spillForCall()
        e.move(.rcx, value)
        e.leaOffset(.rdi, .r15, -X86Emitter.contextBias)  // the context block
        e.move(.rsi, .r12)
        e.moveImmediate(.rdx, BTCallouts.info(segment: segment, size: size))
        e.moveImmediate(.rax, callouts.store)
        e.call(.rax)
        e.test(.rax, .rax, size: 1)
        e.jcc(4, fail)  // E: refused
        reloadAfterCall()
    }

    /// The host address of `g`'s memory operand in R13, from a write probe, for one host LOCK'd
    /// instruction on it (atomic beside device threads and other vCPUs). Through the callout (a
    /// TLB miss, or stores watched by other vCPUs) there is none: the callout filled the host
    /// TLB when stores may use it, so a second probe finds the page; otherwise the block stops
    /// before the instruction and the interpreter does it. Flags kept.
    @discardableResult
    private mutating func lockedAddress(_ g: GuestInstruction, retired k: Int, size: UInt8, addressReady: Bool = false) -> Label {
        let fail = failure(retired: k, rip: g.rip)
        if !addressReady { address(g.insn, rip: g.rip) }
        loadAccess(segment: accessSegment(g.insn), size: size, forWrite: true, keepHost: true, fail: fail)
        let direct = e.makeLabel()
        e.move(.rcx, .r13)
        e.unlessRCXZero(jumpTo: direct)
        probe(size: size, write: true, miss: refusal(from: fail))
        e.leaSum(.r13, base: .r12, index: .rsi, scale: 1)
        e.bind(direct)
        return fail
    }

    /// Stops before the instruction unless R13 holds a canonical address. Flags kept.
    private mutating func checkCanonical(retired k: Int, rip: UInt64) {
        if fast.loads {
            let fail = failure(retired: k, rip: rip, flags: .inHost, afterCall: false)
            canonicalDistance(of: .r13)
            e.unlessRCXZero(jumpTo: fail)
        } else {
            let fail = failure(retired: k, rip: rip, afterCall: false)
            saveFlags()
            e.move(.rdx, .r13)
            e.shift64(4, .rdx, by: 16)
            e.shift64(7, .rdx, by: 16)
            e.compare(.rdx, .r13)
            e.jcc(5, fail)
            restoreFlags()
        }
    }

    // MARK: Instructions

    /// Emits one instruction; true when it ended the block.
    private mutating func instruction(_ g: GuestInstruction, retired k: Int) -> Bool {
        let insn = g.insn
        let next = (g.rip &+ UInt64(insn.length)) & Self.instructionPointerMask(mode)
        let size = Self.operationSize(insn)
        let d = insn.destination, s = insn.source
        let segment = accessSegment(insn)
        switch insn.operation {
        case .mov:
            if d.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                read(s, insn, into: .rbx, size: size)
                storeAccess(segment: segment, size: size, fail: fail)
            } else if s.kind == .memory && d.kind == .register && size >= 4 {
                // Straight into the host register caching the destination (a 32-bit load
                // clears bits 63:32, as the guest's does).
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                let h = cache(d.index & 15, load: false)
                loadAccess(segment: segment, size: size, into: h, fail: fail)
                dirty[Int(d.index & 15)] = true
            } else if s.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: size, fail: fail)
                write(d, from: .rax, size: size)
            } else if d.kind == .register && s.kind == .register {
                // Register to register: straight between the host registers that cache them.
                let from = cache(s.index & 15, load: true)
                setGuest(d.index, from: from, size: size)
            } else if d.kind == .register && s.kind == .immediate && size >= 4 {
                let h = cache(d.index & 15, load: false)
                e.moveImmediate(h, insn.immediate & Self.mask(size))
                dirty[Int(d.index & 15)] = true
            } else {
                read(s, insn, into: .rax, size: size)
                write(d, from: .rax, size: size)
            }

        case .add, .or, .adc, .sbb, .and, .sub, .xor, .cmp, .test:
            // The group-1 extension (ADD 0 ... CMP 7), 8 for TEST.
            let n: UInt8
            switch insn.operation {
            case .add: n = 0
            case .or: n = 1
            case .adc: n = 2
            case .sbb: n = 3
            case .and: n = 4
            case .sub: n = 5
            case .xor: n = 6
            case .cmp: n = 7
            default: n = 8  // TEST
            }
            if insn.prefixes.lock {
                lockedAddress(g, retired: k, size: size)
                if s.kind == .immediate {
                    e.byte(0xf0)
                    e.aluImmediate(n, base: .r13, insn.immediate, size: size)
                } else {
                    read(s, insn, into: .rcx, size: size)
                    e.byte(0xf0)
                    e.baseForm(Opcode(n << 3 | (size == 1 ? 0 : 1)), size: size, reg: HostRegister.rcx.rawValue, base: .r13, disp: 0)
                }
                break
            }
            if inPlace(insn, size: size) {
                // On the host register that caches the destination: the host's operation at the
                // same size writes the same bits and flags the guest's would.
                let writes = n != 7 && n != 8
                let h = cache(d.index & 15, load: true)
                if s.kind == .immediate {
                    if n == 8 { e.testImmediate(h, insn.immediate, size: size) } else { e.aluImmediate(n, h, insn.immediate, size: size) }
                } else {
                    let from = cache(s.index & 15, load: true)
                    if n == 8 { e.test(h, from, size: size) } else { e.alu(n, h, from, size: size) }
                }
                if writes { dirty[Int(d.index & 15)] = true }
                break
            }
            arithmetic(g, retired: k, size: size, writes: n != 7 && n != 8) { e in
                if n == 8 { e.test(.rax, .rcx, size: size) } else { e.alu(n, .rax, .rcx, size: size) }
            }

        case .inc, .dec, .not, .neg:
            // The extension: INC 0 and DEC 1 (group 4/5), NOT 2 and NEG 3 (group 3).
            let ext: UInt8
            switch insn.operation {
            case .inc: ext = 0
            case .dec: ext = 1
            case .not: ext = 2
            default: ext = 3
            }
            func emit(_ e: inout X86Emitter, _ r: HostRegister) {
                if ext < 2 { e.incDec(ext, r, size: size) } else { e.unary(ext, r, size: size) }
            }
            if insn.prefixes.lock {
                lockedAddress(g, retired: k, size: size)
                e.byte(0xf0)
                let opcode: UInt8 = ext < 2 ? (size == 1 ? 0xfe : 0xff) : (size == 1 ? 0xf6 : 0xf7)
                e.baseForm(Opcode(opcode), size: size, reg: ext, base: .r13, disp: 0)
                break
            }
            if d.kind == .register {
                let h = cache(d.index & 15, load: true)
                emit(&e, h)
                dirty[Int(d.index & 15)] = true
                break
            }
            arithmetic(g, retired: k, size: size, writes: true, unary: true) { e in emit(&e, .rax) }

        case .rol, .ror, .rcl, .rcr, .shl, .shr, .sar:
            let ext: UInt8
            switch insn.operation {
            case .rol: ext = 0
            case .ror: ext = 1
            case .rcl: ext = 2
            case .rcr: ext = 3
            case .shl: ext = 4
            case .shr: ext = 5
            default: ext = 7
            }
            if d.kind == .register && s.kind == .immediate {
                let h = cache(d.index & 15, load: true)
                e.shiftImmediate(ext, h, UInt8(truncatingIfNeeded: insn.immediate), size: size)
                dirty[Int(d.index & 15)] = true
                break
            }
            arithmetic(g, retired: k, size: size, writes: true, unary: true, count: s) { e in
                e.shiftByCL(ext, .rax, size: size)
            }

        case .lea:
            address(insn, rip: g.rip, offsetOnly: true)
            e.move(.rax, .r12)
            write(d, from: .rax, size: size)

        case .movzx, .movsx:
            if s.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: s.size, fail: fail)
            } else {
                read(s, insn, into: .rax, size: s.size)
            }
            // (A load already zero-extends what it read.)
            if insn.operation == .movzx {
                if s.kind != .memory { e.zeroExtend(.rax, from: s.size) }
            } else {
                e.signExtend(.rax, from: s.size)
            }
            write(d, from: .rax, size: d.size)

        case .imul:
            if s.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: size, fail: fail)
                e.move(.rcx, .rax)
            } else {
                read(s, insn, into: .rcx, size: size)
            }
            if insn.source2.kind == .immediate {
                e.imul(.rax, .rcx, immediate: insn.immediate, size: size)
            } else {
                read(insn.source2, insn, into: .rax, size: size)
                e.imul(.rax, .rcx, size: size)
            }
            write(d, from: .rax, size: size)

        case .setcc:
            if d.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                e.setcc(insn.condition, .rbx)
                address(insn, rip: g.rip)
                storeAccess(segment: segment, size: 1, fail: fail)
            } else {
                e.setcc(insn.condition, .rax)
                write(d, from: .rax, size: 1)
            }

        case .cmovcc:
            if s.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: size, fail: fail)
                e.move(.rcx, .rax)
            } else {
                read(s, insn, into: .rcx, size: size)
            }
            read(d, insn, into: .rax, size: size)
            e.cmovcc(insn.condition, .rax, .rcx, size: size)
            write(d, from: .rax, size: size)

        case .signExtendAccumulator:
            guestValue(into: .rax, 0)
            e.accumulatorExtend(0x98, size: insn.operandSize)
            write(.register(0, size: insn.operandSize), from: .rax, size: insn.operandSize)

        case .signExtendIntoDX:
            guestValue(into: .rax, 0)
            e.accumulatorExtend(0x99, size: insn.operandSize)
            write(.register(2, size: insn.operandSize), from: .rdx, size: insn.operandSize)

        case .xchg:
            if d.kind == .memory || s.kind == .memory {
                // Linux's smp_store_mb() and set_current_state(): atomic beside other vCPUs.
                let r = d.kind == .memory ? s : d
                lockedAddress(g, retired: k, size: size)
                read(r, insn, into: .rcx, size: size)
                e.baseForm(Opcode(size == 1 ? 0x86 : 0x87), size: size, reg: HostRegister.rcx.rawValue, base: .r13, disp: 0)
                write(r, from: .rcx, size: size)
                break
            }
            read(d, insn, into: .rax, size: size)
            read(s, insn, into: .rcx, size: size)
            write(d, from: .rcx, size: size)
            write(s, from: .rax, size: size)

        case .cmpxchgDouble:
            // RDX:RAX compared with the 16 bytes, RCX:RBX stored when equal, else RDX:RAX
            // loaded (left as they were when equal, so written back either way); only ZF
            // changes. A misaligned operand stops the block: the interpreter raises the #GP.
            let fail = lockedAddress(g, retired: k, size: 16)
            e.moveImmediate(.rcx, 60)
            e.shlx(.rcx, .r13, count: .rcx)   // the address's low four bits (host = guest mod 4096)
            e.unlessRCXZero(jumpTo: refusal(from: fail))
            guestValue(into: .rax, 0)
            guestValue(into: .rdx, 2)
            guestValue(into: .rbx, 3)
            guestValue(into: .rcx, 1)
            e.bytes([0xf0, 0x49, 0x0f, 0xc7, 0x4d, 0x00])  // lock cmpxchg16b [r13 + 0]
            setGuest(0, from: .rax, size: 8)
            setGuest(2, from: .rdx, size: 8)

        case .cld, .std:
            // DF in the guest's RFLAGS in the context (the exit takes it back; the string callouts
            // and PUSHF read it there).
            saveFlags()
            e.load(.rax, disp: BTContext.rflags)
            if insn.operation == .cld {
                e.aluImmediate(4, .rax, ~UInt64(0x400), size: 8)  // AND: DF clear
            } else {
                e.aluImmediate(1, .rax, 0x400, size: 8)           // OR: DF set
            }
            e.store(.rax, disp: BTContext.rflags, size: 8)
            restoreFlags()

        case .nop, .pause, .lfence, .sfence:
            // LFENCE and SFENCE order nothing the host's TSO does not already (no weakly
            // ordered accesses are translated).
            break

        case .mfence:
            // A store followed by a load may pass it on the host as on the guest: the host's.
            e.bytes([0x0f, 0xae, 0xf0])

        case .bswap:
            guestValue(into: .rax, d.index)
            if size == 8 { e.byte(0x48) }
            e.byte(0x0f); e.byte(0xc8)                // BSWAP eax / rax
            write(d, from: .rax, size: size)

        case .bt, .bts, .btr, .btc:
            let ext: UInt8 = insn.operation == .bt ? 4 : insn.operation == .bts ? 5 : insn.operation == .btr ? 6 : 7
            if d.kind == .memory && s.kind == .register {
                bitStringTest(g, retired: k, size: size)
                break
            }
            if d.kind == .memory && insn.prefixes.lock {
                // LOCK BTS/BTR/BTC [mem], imm8: one host LOCK'd instruction (the immediate is
                // taken modulo the operand's width, as the guest's).
                lockedAddress(g, retired: k, size: size)
                e.byte(0xf0)
                e.baseForm(Opcode(0x0f, 0xba), size: size, reg: ext, base: .r13, disp: 0)
                e.byte(UInt8(truncatingIfNeeded: insn.immediate))
                break
            }
            if d.kind == .memory {
                // An immediate bit index: the operand is just the memory word.
                arithmetic(g, retired: k, size: size, writes: insn.operation != .bt, unary: true) { e in
                    e.registerForm(Opcode(0x0f, 0xba), size: size, reg: ext, rm: .rax)  // BTx rax, imm8
                    e.byte(UInt8(truncatingIfNeeded: insn.immediate))
                }
                break
            }
            guestValue(into: .rax, d.index)
            if s.kind == .immediate {
                e.registerForm(Opcode(0x0f, 0xba), size: size, reg: ext, rm: .rax)  // BTx rax, imm8
                e.byte(UInt8(truncatingIfNeeded: insn.immediate))
            } else {
                guestValue(into: .rcx, s.index)
                let op: UInt8 = insn.operation == .bt ? 0xa3 : insn.operation == .bts ? 0xab : insn.operation == .btr ? 0xb3 : 0xbb
                e.registerForm(Opcode(0x0f, op), size: size, reg: HostRegister.rcx.rawValue, rm: .rax)
            }
            if insn.operation != .bt { write(d, from: .rax, size: size) }

        case .bsf, .bsr, .tzcnt:
            bitScan(g, retired: k, size: size)

        case .shld, .shrd:
            doubleShift(g, size: size)

        case .mul, .div, .idiv:
            wide(g, retired: k)

        case .cmpxchg, .xadd:
            lockedAddress(g, retired: k, size: size)
            if insn.operation == .cmpxchg {
                guestValue(into: .rax, 0)   // guest RAX now cached: written below on one path only
                read(s, insn, into: .rcx, size: size)
                e.byte(0xf0)
                e.baseForm(Opcode(0x0f, size == 1 ? 0xb0 : 0xb1), size: size, reg: HostRegister.rcx.rawValue, base: .r13, disp: 0)
                // Only a failed comparison loads the accumulator (a success leaves RAX whole).
                let equal = e.makeLabel()
                e.jcc(4, equal)
                if let h = hostFor[0] {
                    e.registerForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: HostRegister.rax.rawValue, rm: h)
                    dirty[0] = true
                }
                e.bind(equal)
            } else {
                read(s, insn, into: .rcx, size: size)
                e.byte(0xf0)
                e.baseForm(Opcode(0x0f, size == 1 ? 0xc0 : 0xc1), size: size, reg: HostRegister.rcx.rawValue, base: .r13, disp: 0)
                setGuest(s.index, from: .rcx, size: size)
            }

        case .stos, .movs:
            // The callout works on the context's RCX, RSI, RDI and RAX: spilled before it,
            // every cached register reloaded after. When it stops short, the block stops
            // before the instruction with the iterations done in the registers, as an
            // interrupted REP leaves them, and the interpreter goes on.
            let fail = failure(retired: k, rip: g.rip)
            callOut(callouts.string, argument: UInt64(insn.operation == .movs ? 1 : 0) | UInt64(insn.operandSize) << 8
                    | UInt64(insn.memory.segment) << 16)
            // 1: done, on to the next instruction; 2: more to do, so this block ends on the
            // instruction again (counted once per run, as the interpreter counts each partial
            // REP step), and the next entry or link goes on with it; 0: the interpreter.
            let done = e.makeLabel(), notDone = e.makeLabel()
            e.leaOffset(.rcx, .rcx, -1)
            e.unlessRCXZero(jumpTo: notDone)
            e.jmp(done)
            e.bind(notDone)
            e.leaOffset(.rcx, .rcx, -1)
            e.unlessRCXZero(jumpTo: fail)
            exit(rip: g.rip, retired: k + 1)
            e.bind(done)

        case .rdtsc, .rdtscp:
            // A callout that reads the machine's counter into the context's registers (spilled
            // before it, reloaded after); refused (CR4.TSD above CPL 0), the block stops before it.
            let fail = failure(retired: k, rip: g.rip)
            callOut(callouts.timeStamp, argument: insn.operation == .rdtscp ? 1 : 0)
            e.leaOffset(.rcx, .rcx, -1)  // 1 (done) -> 0
            e.unlessRCXZero(jumpTo: fail)

        case .syscall, .sysret:
            // A callout makes the change of privilege on the machine and puts RCX, R11, RIP
            // and RFLAGS in the context; it answers the next block's body (a jump there, the new
            // flags loaded), 1 (done: back to Swift) or 0 (refused: the block stops before it).
            let fail = failure(retired: k, rip: g.rip)
            let toSwift = e.makeLabel()
            saveFlags()                             // for a refusal's stop
            saveFlags(to: BTContext.hostFlags)      // the status flags the callout reads
            spillForCall()
            e.leaOffset(.rdi, .r15, -X86Emitter.contextBias)  // the context block
            e.moveImmediate(.rsi, insn.operation == .sysret ? 1 : 0)
            e.moveImmediate(.rdx, next)
            e.leaOffset(.rcx, .r14, -Int32(k + 1))
            e.moveImmediate(.rax, callouts.systemCall)
            e.call(.rax)
            // The host's flags are free here: every way on loads the guest's from the context.
            e.test(.rax, .rax, size: 8)
            e.jcc(4, fail)                                   // E: refused
            e.leaOffset(.r14, .r14, -Int32(k + 1))
            e.aluImmediate(7, .rax, 1, size: 8)              // CMP rax, 1
            e.jcc(4, toSwift)                                // E: done
            e.pushContext(disp: BTContext.hostFlags); e.popFlags()
            e.jump(.rax)
            e.bind(toSwift)
            e.jumpThroughContext(disp: BTContext.exitAddress)
            return true

        case .pushf:
            // The image: the status flags (in the host's RFLAGS) over the rest of the guest's
            // RFLAGS (unchanged while translated code runs), RF and VM cleared as in 64-bit mode.
            // Put together without touching the host's flags: the store's callout, if any,
            // saves them as the guest's before the instruction.
            let fail = failure(retired: k, rip: g.rip)
            e.pushFlags(); e.pop(.rbx)
            e.andMask(.rbx, .rbx, maskAt: BTContext.statusFlagsMask)
            e.load(.rax, disp: BTContext.rflags)
            e.andMask(.rax, .rax, maskAt: BTContext.pushfImageMask)
            e.leaSum(.rbx, base: .rbx, index: .rax, scale: 1) // disjoint bits: the sum is the OR
            stackSlot(delta: -8)
            storeAccess(segment: 2, size: 8, fail: fail)
            setGuest(4, from: .r12, size: 8)
            countInContext(BTContext.pushfCount)

        case .movSegment:
            let selector = BTContext.selectors + 8 * Int32(s.index)
            if d.kind == .memory {
                let fail = failure(retired: k, rip: g.rip)
                address(insn, rip: g.rip)
                e.load(.rbx, disp: selector)
                storeAccess(segment: segment, size: 2, fail: fail)
            } else {
                e.load(.rax, disp: selector)
                write(d, from: .rax, size: d.size == 0 ? insn.operandSize : d.size)
            }
            countInContext(BTContext.movFromSegmentCount)

        case .cli:
            // IF cleared in the guest's RFLAGS (the exit takes it back), unless CPL > IOPL: then
            // the block stops before it and the interpreter raises the #GP (no callout before:
            // the stop writes the cached registers back). The host's flags stay as they are.
            let fail = failure(retired: k, rip: g.rip, flags: .inHost, afterCall: false)
            stopUnlessIOPLAllows(fail)
            e.load(.rax, disp: BTContext.rflags)
            e.andMask(.rax, .rax, maskAt: BTContext.allButInterruptFlagMask)
            e.store(.rax, disp: BTContext.rflags, size: 8)

        case .sti:
            // IF set in the guest's RFLAGS (the exit takes it back), unless CPL > IOPL (the
            // interpreter raises the #GP) or an interrupt was waiting when the block was entered
            // (the interpreter runs the STI, so that the interrupt is taken right after the
            // shadow, as on hardware): both stop before it. The host's flags stay as they are.
            let fail = failure(retired: k, rip: g.rip, flags: .inHost, afterCall: false)
            stopUnlessIOPLAllows(fail)
            e.load(.rcx, disp: BTContext.interruptPending)
            e.unlessRCXZero(jumpTo: fail)
            // IF was clear: the next instruction is in its shadow. It runs in this block unless
            // the block stops before it, and then the exit sets the shadow (`shadowRIP`).
            let wasSet = e.makeLabel()
            e.load(.rax, disp: BTContext.rflags)
            e.pext(.rcx, .rax, maskAt: BTContext.interruptFlagMask)
            e.unlessRCXZero(jumpTo: wasSet)
            e.moveImmediate(.rcx, next)
            e.store(.rcx, disp: BTContext.shadowRIP, size: 8)
            e.bind(wasSet)
            e.andMask(.rax, .rax, maskAt: BTContext.allButInterruptFlagMask)
            e.leaOffset(.rax, .rax, 0x200)                   // IF set
            e.store(.rax, disp: BTContext.rflags, size: 8)

        case .swapgs:
            // GS's base and IA32_KERNEL_GS_BASE exchanged in the context (the exit takes both
            // back); at CPL above 0 the block stops before it and the interpreter raises the #GP.
            // Only where FS and GS accesses take their base from the context (`addsSegmentBase`):
            // elsewhere the callouts use the machine's, which the exchange reaches only at the exit.
            let fail = failure(retired: k, rip: g.rip, flags: .inHost, afterCall: false)
            guard addsSegmentBase(5) else {
                e.jmp(fail)
                return true
            }
            e.load(.rcx, disp: BTContext.cpl)
            e.unlessRCXZero(jumpTo: fail)
            e.load(.rax, disp: BTContext.segmentBase(5))
            e.load(.rcx, disp: BTContext.kernelGSBase)
            e.store(.rcx, disp: BTContext.segmentBase(5), size: 8)
            e.store(.rax, disp: BTContext.kernelGSBase, size: 8)

        case .leave:
            // RSP = RBP + 8, RBP = [RBP] (the load first: a refusal changes nothing).
            let fail = failure(retired: k, rip: g.rip)
            guestValue(into: .r12, 5)
            loadAccess(segment: 2, size: 8, fail: fail)
            moveStackPointer(by: 8)
            setGuest(5, from: .rax, size: 8)

        case .jcc:
            let taken = e.makeLabel()
            writeBackAll()  // once for both ways out (stores leave the flags alone)
            e.jcc(insn.condition, taken)
            exit(rip: next, retired: k + 1, writeBack: false)
            e.bind(taken)
            exit(rip: Self.branchTarget(insn, next: next, mode: mode), retired: k + 1, writeBack: false)
            return true

        case .jmpRelative:
            exit(rip: Self.branchTarget(insn, next: next, mode: mode), retired: k + 1)
            return true

        case .push:
            let fail = failure(retired: k, rip: g.rip)
            if s.kind == .memory {
                // The source's address from the RSP before the push; a refused store after the
                // load stops before the instruction as well (a load changes nothing).
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: 8, fail: fail)
                e.move(.rbx, .rax)
                stackSlot(delta: -8)
            } else {
                stackSlot(delta: -8)
                read(s, insn, into: .rbx, size: 8)
            }
            storeAccess(segment: 2, size: 8, fail: fail)
            setGuest(4, from: .r12, size: 8)

        case .pop:
            let fail = failure(retired: k, rip: g.rip)
            guestValue(into: .r12, 4)
            loadAccess(segment: 2, size: 8, fail: fail)
            moveStackPointer(by: 8)
            setGuest(d.index, from: .rax, size: 8)

        case .callRelative:
            let fail = failure(retired: k, rip: g.rip)
            pushReturnAddress(next, fail: fail)
            let target = Self.branchTarget(insn, next: next, mode: mode)
            if fast.loads {
                callExit(returnRIP: next, retired: k + 1) { $0.exit(rip: target, retired: 0, writeBack: false) }
            } else {
                exit(rip: target, retired: k + 1)
            }
            return true

        case .ret:
            let fail = failure(retired: k, rip: g.rip)
            guestValue(into: .r12, 4)
            loadAccess(segment: 2, size: 8, fail: fail)
            e.move(.r13, .rax)
            checkCanonical(retired: k, rip: g.rip)
            moveStackPointer(by: 8 &+ (insn.immediate & 0xffff))
            if fast.loads {
                returnThroughHostStack(retired: k + 1)
            } else {
                exitToR13(retired: k + 1)
            }
            return true

        case .jmpIndirect, .callIndirect:
            let fail = failure(retired: k, rip: g.rip)
            if s.kind == .memory {
                address(insn, rip: g.rip)
                loadAccess(segment: segment, size: 8, fail: fail)
                e.move(.r13, .rax)
            } else {
                guestValue(into: .r13, s.index)
            }
            if insn.operation == .jmpIndirect && fast.loads {
                exitToR13(retired: k + 1, canonicalCheck: (k, g.rip))
                return true
            }
            checkCanonical(retired: k, rip: g.rip)
            if insn.operation == .callIndirect { pushReturnAddress(next, fail: fail) }
            if insn.operation == .callIndirect && fast.loads {
                callExit(returnRIP: next, retired: k + 1) { $0.chain(retired: 0, target: .r13) }
            } else {
                exitToR13(retired: k + 1)
            }
            return true

        default:
            // `covers` admitted nothing else.
            exit(rip: g.rip, retired: k)
            return true
        }
        return false
    }

    /// The common shape of the ALU, unary and shift families: destination into RAX (through a
    /// read-modify-write load when it is memory), source into RCX, `operation` on the host,
    /// result written back unless `writes` is false. The guest's flags are in the host's
    /// RFLAGS when `operation` runs (ADC, SBB, RCL, RCR and INC/DEC read or keep some).
    private mutating func arithmetic(_ g: GuestInstruction, retired k: Int, size: UInt8, writes: Bool,
                                     unary: Bool = false, count: Operand? = nil,
                                     _ operation: (inout X86Emitter) -> Void) {
        let insn = g.insn
        let d = insn.destination, s = insn.source
        let segment = accessSegment(insn)
        var fail: Label?
        if d.kind == .memory {
            let f = failure(retired: k, rip: g.rip)
            fail = f
            address(insn, rip: g.rip)
            loadAccess(segment: segment, size: size, forWrite: writes, keepHost: writes, fail: f)
            if !unary { read(s, insn, into: .rcx, size: size) }
        } else if !unary && s.kind == .memory {
            let f = failure(retired: k, rip: g.rip)
            address(insn, rip: g.rip)
            loadAccess(segment: segment, size: size, fail: f)
            e.move(.rcx, .rax)
            read(d, insn, into: .rax, size: size)
        } else {
            read(d, insn, into: .rax, size: size)
            if !unary { read(s, insn, into: .rcx, size: size) }
        }
        if let count {
            // A shift's count into CL, after the loads (the TLB probe uses RCX).
            if count.kind == .immediate { e.moveImmediate(.rcx, insn.immediate & 0xff) } else { guestValue(into: .rcx, 1) }
        }
        operation(&e)
        guard writes else { return }
        if d.kind == .memory, let fail {
            storeBack(segment: segment, size: size, fail: fail)
        } else {
            write(d, from: .rax, size: size)
        }
    }

    /// BT, BTS, BTR, BTC with a register bit index into memory: the index is signed and picks
    /// the word of the bit string that holds the bit (the operand's address plus the index
    /// shifted right, arithmetically, by log2 of the width, times the width in bytes), then
    /// the bit within it. With LOCK, one host LOCK'd instruction on that word. Clobbers RBX,
    /// which holds the index (callee-saved: it outlives the access's callout).
    private mutating func bitStringTest(_ g: GuestInstruction, retired k: Int, size: UInt8) {
        let insn = g.insn
        let writes = insn.operation != .bt
        let op: UInt8 = insn.operation == .bt ? 0xa3 : insn.operation == .bts ? 0xab : insn.operation == .btr ? 0xb3 : 0xbb
        address(insn, rip: g.rip)
        guestValue(into: .rbx, insn.source.index)
        if size < 8 { e.signExtend(.rbx, from: size) }
        let widthShift: UInt64 = size == 8 ? 6 : size == 4 ? 5 : 4
        e.moveImmediate(.rcx, widthShift)
        e.sarx(.rdx, .rbx, count: .rcx)                       // the word's index
        e.leaSum(.r12, base: .r12, index: .rdx, scale: size)  // its address
        if insn.prefixes.lock {
            lockedAddress(g, retired: k, size: size, addressReady: true)
            // The bit within the word alone: a host BTx on memory would index a bit string too.
            e.moveImmediate(.rcx, 64 - widthShift)
            e.shlx(.rbx, .rbx, count: .rcx)
            e.shrx(.rbx, .rbx, count: .rcx)
            e.byte(0xf0)
            e.baseForm(Opcode(0x0f, op), size: size, reg: HostRegister.rbx.rawValue, base: .r13, disp: 0)
            return
        }
        let fail = failure(retired: k, rip: g.rip)
        loadAccess(segment: accessSegment(insn), size: size, forWrite: writes, keepHost: writes, fail: fail)
        // On a register the host takes the index modulo the width.
        e.registerForm(Opcode(0x0f, op), size: size, reg: HostRegister.rbx.rawValue, rm: .rax)
        if writes { storeBack(segment: accessSegment(insn), size: size, fail: fail) }
    }

    /// MUL, DIV and IDIV at 32 or 64 bits: RDX:RAX with the source. A division runs on the
    /// host only when it cannot fault (divisor not 0 and a quotient that fits: for DIV the
    /// high half below the divisor; for IDIV a dividend that is its low half sign-extended,
    /// and not the most negative value by -1); otherwise the block stops before it and the
    /// interpreter raises the #DE. The flags a division leaves are undefined.
    private mutating func wide(_ g: GuestInstruction, retired k: Int) {
        let insn = g.insn
        let s = insn.source
        let size = s.size == 0 ? insn.operandSize : s.size
        if s.kind == .memory {
            let fail = failure(retired: k, rip: g.rip)
            address(insn, rip: g.rip)
            loadAccess(segment: accessSegment(insn), size: size, fail: fail)
            e.move(.rcx, .rax)
        } else {
            guestValue(into: .rcx, s.index)
        }
        guestValue(into: .rax, 0)
        guestValue(into: .rdx, 2)
        switch insn.operation {
        case .mul:
            e.registerForm(Opcode(0xf7), size: size, reg: 4, rm: .rcx)   // MUL rcx
        default:
            let fail = failure(retired: k, rip: g.rip, afterCall: false)
            saveFlags()
            if insn.operation == .div {
                e.registerForm(Opcode(0x39), size: size, reg: HostRegister.rcx.rawValue, rm: .rdx)  // CMP rdx, rcx
                e.jcc(3, fail)                                                                   // AE: #DE possible
            } else {
                let fits = e.makeLabel()
                e.move(.rsi, .rax)
                e.registerForm(Opcode(0xc1), size: size, reg: 7, rm: .rsi); e.byte(UInt8(size * 8 - 1))  // SAR: the sign
                e.registerForm(Opcode(0x39), size: size, reg: HostRegister.rdx.rawValue, rm: .rsi)     // CMP rsi, rdx
                e.jcc(5, fail)                                                                   // NE: a wide dividend
                e.test(.rcx, .rcx, size: size)
                e.jcc(4, fail)                                                                   // divisor 0
                e.registerForm(Opcode(0x83), size: size, reg: 7, rm: .rcx); e.byte(0xff)         // CMP rcx, -1
                e.jcc(5, fits)
                e.moveImmediate(.rsi, size == 8 ? 0x8000_0000_0000_0000 : 0x8000_0000)
                e.registerForm(Opcode(0x39), size: size, reg: HostRegister.rsi.rawValue, rm: .rax)     // CMP rax, MIN
                e.jcc(4, fail)
                e.bind(fits)
            }
            e.registerForm(Opcode(0xf7), size: size, reg: insn.operation == .div ? 6 : 7, rm: .rcx)
        }
        setGuest(0, from: .rax, size: size)
        setGuest(2, from: .rdx, size: size)
    }

    /// Adds one to the context's counter at `slot` (no flags touched).
    private mutating func countInContext(_ slot: Int32) {
        e.load(.rcx, disp: slot)
        e.leaOffset(.rcx, .rcx, 1)  // LEA rcx, [rcx+1]
        e.store(.rcx, disp: slot, size: 8)
    }

    /// R12 = guest RSP + `delta` (no flags touched).
    private mutating func stackSlot(delta: Int32) {
        e.leaOffset(.r12, cache(4, load: true), delta)
    }

    /// Guest RSP = R12 + `delta` (at most 8 + 0xffff: RET imm16).
    private mutating func moveStackPointer(by delta: UInt64) {
        e.leaOffset(.rsi, .r12, Int32(truncatingIfNeeded: delta))
        setGuest(4, from: .rsi, size: 8)
    }

    /// A retpoline thunk's CALL, `mov [rsp], reg` and RET (`retpolineRegister`) as what they
    /// do together: the 8 bytes below RSP end up holding the register (the CALL's push,
    /// overwritten), RSP is as before, and the thunk jumps to the register's value. A fault on
    /// the store, or a target that is not canonical, stops the block before the CALL, and the
    /// interpreter runs the three (writing the same bytes again) to the fault.
    private mutating func retpoline(_ call: GuestInstruction, through register: UInt8, retired k: Int) {
        let fail = failure(retired: k, rip: call.rip)
        guestValue(into: .rbx, register)
        stackSlot(delta: -8)
        storeAccess(segment: 2, size: 8, fail: fail)
        guestValue(into: .r13, register)
        exitToR13(retired: k + 3, canonicalCheck: (k, call.rip))
    }

    /// Pushes the 8-byte `value` (a return address) and updates RSP. Flags kept.
    private mutating func pushReturnAddress(_ value: UInt64, fail: Label) {
        stackSlot(delta: -8)
        e.moveImmediate(.rbx, value)
        storeAccess(segment: 2, size: 8, fail: fail)
        setGuest(4, from: .r12, size: 8)
    }
}

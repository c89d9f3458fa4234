// The virtualization holes of x86: the instructions Robin and Irvine ("Analysis of the Intel
// Pentium's Ability to Support a Secure Virtual Machine Monitor", USENIX Security 2000) list as
// sensitive but unprivileged. They read or change privileged state (descriptor tables, CR0,
// IF and IOPL, segment descriptors and the current privilege level) yet run at CPL3 without a
// trap, so a monitor that runs its guest kernel deprivileged and waits for traps never sees
// them. A software engine executes every one of them itself and can count them; hardware
// virtualization runs them without an exit and cannot.

/// One of Robin and Irvine's sensitive-but-unprivileged instruction kinds.
public enum SensitiveInstruction: UInt8, CaseIterable, Sendable {
    case sgdt, sidt, sldt, smsw, str
    case pushf, popf
    case lar, lsl, verr, verw
    /// PUSH of a segment register (ES, CS, SS, DS outside 64-bit mode; FS, GS anywhere).
    case pushSegment
    /// POP into a segment register.
    case popSegment
    case callFar, jmpFar, retFar
    /// INT imm8.
    case intImmediate
    case int3, into
    /// MOV Sreg, r/m.
    case movToSegment
    /// MOV r/m, Sreg.
    case movFromSegment

    /// The name `--stats` prints.
    public var name: String {
        switch self {
        case .sgdt: "sgdt"
        case .sidt: "sidt"
        case .sldt: "sldt"
        case .smsw: "smsw"
        case .str: "str"
        case .pushf: "pushf"
        case .popf: "popf"
        case .lar: "lar"
        case .lsl: "lsl"
        case .verr: "verr"
        case .verw: "verw"
        case .pushSegment: "push sreg"
        case .popSegment: "pop sreg"
        case .callFar: "call far"
        case .jmpFar: "jmp far"
        case .retFar: "ret far"
        case .intImmediate: "int n"
        case .int3: "int3"
        case .into: "into"
        case .movToSegment: "mov to sreg"
        case .movFromSegment: "mov from sreg"
        }
    }
}

/// Executions of each sensitive instruction by the privilege level (CPL 0-3) it ran at: a fixed
/// table, one slot per kind and level, so counting is one indexed add.
public struct SensitiveInstructionCounts: Sendable, Equatable {
    public static let privilegeLevels = 4
    /// `table[kind.rawValue * 4 + cpl]`.
    private var table = [UInt64](repeating: 0, count: SensitiveInstruction.allCases.count * privilegeLevels)

    public init() {}

    /// Counts one execution of `kind` at privilege level `cpl` (its low two bits).
    @inline(__always)
    public mutating func record(_ kind: SensitiveInstruction, cpl: UInt8) {
        // In bounds: rawValue < allCases.count and the level is masked to 0-3.
        table[Int(kind.rawValue) &* Self.privilegeLevels &+ Int(cpl & 3)] &+= 1
    }

    /// Counts `times` executions of `kind` at privilege level `cpl` (its low two bits): what
    /// a translator counted in its own code.
    public mutating func record(_ kind: SensitiveInstruction, cpl: UInt8, times: UInt64) {
        table[Int(kind.rawValue) &* Self.privilegeLevels &+ Int(cpl & 3)] &+= times
    }

    /// Executions of `kind` at `cpl` (0-3; other levels have none).
    public func count(_ kind: SensitiveInstruction, cpl: Int) -> UInt64 {
        guard (0..<Self.privilegeLevels).contains(cpl) else { return 0 }
        return table[Int(kind.rawValue) * Self.privilegeLevels + cpl]
    }

    /// Executions of `kind` at every level.
    public func total(_ kind: SensitiveInstruction) -> UInt64 {
        (0..<Self.privilegeLevels).reduce(0) { $0 &+ count(kind, cpl: $1) }
    }

    /// True when nothing was counted.
    public var isEmpty: Bool { table.allSatisfy { $0 == 0 } }

    /// Adds another vCPU's counts to these.
    public mutating func merge(_ other: SensitiveInstructionCounts) {
        for i in table.indices { table[i] &+= other.table[i] }
    }

    /// One line per instruction that occurred: its name, its counts at CPL0 and CPL3, and at
    /// CPL1 and CPL2 when they are not zero.
    public var reportLines: [String] {
        SensitiveInstruction.allCases.filter { total($0) > 0 }.map { kind in
            func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(1, width - s.count)) }
            var line = pad(kind.name, 16) + pad("cpl0 \(count(kind, cpl: 0))", 16) + "cpl3 \(count(kind, cpl: 3))"
            for level in 1...2 where count(kind, cpl: level) > 0 { line += "  cpl\(level) \(count(kind, cpl: level))" }
            return line
        }
    }
}

/// A vCPU whose engine sees every sensitive instruction the guest executes (a software CPU)
/// and counts them. Read it from the vCPU's driving thread, or after that thread has ended.
public protocol SensitiveInstructionCounting: AnyObject {
    var sensitiveInstructionCounts: SensitiveInstructionCounts { get }
}

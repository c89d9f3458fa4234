// Decode lengths against llvm-objdump over compiled code on this machine.
//
// For each instruction llvm-objdump prints, the decoder is given the bytes from that
// instruction on (up to 15, through the following contiguous instructions) and must produce
// the same length, unless it calls the instruction `.undefined` (x87, AVX, other SSE, ...),
// which is counted. The 64-bit pass runs over real x86-64 binaries; the 32- and 16-bit passes
// disassemble /bin/ls as i386 / code16, which gives the legacy modes a large, pseudo-random
// but oracle-checked input.

import Foundation
import Testing
@testable import VisorX86Decode

enum Objdump {
    /// llvm-objdump: $VISOR_LLVM_OBJDUMP if set, else on PATH, else next to swiftc (on PATH or
    /// under /opt/swift), else nil. Nil too when VISOR_TEST_WITHOUT names llvm-objdump (to see
    /// the skip on a machine that has it).
    static let path: String? = {
        let fm = FileManager.default
        let without = (ProcessInfo.processInfo.environment["VISOR_TEST_WITHOUT"] ?? "").split(whereSeparator: { $0 == " " || $0 == "," })
        if without.contains("llvm-objdump") { return nil }
        if let forced = ProcessInfo.processInfo.environment["VISOR_LLVM_OBJDUMP"], fm.isExecutableFile(atPath: forced) {
            return forced
        }
        let pathDirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for dir in pathDirs where fm.isExecutableFile(atPath: dir + "/llvm-objdump") {
            return dir + "/llvm-objdump"
        }
        var swiftcDirs: [String] = []
        for dir in pathDirs where fm.isExecutableFile(atPath: dir + "/swiftc") {
            let resolved = URL(fileURLWithPath: dir + "/swiftc").resolvingSymlinksInPath()
            swiftcDirs.append(resolved.deletingLastPathComponent().path)
        }
        swiftcDirs.append("/opt/swift/usr/bin")
        for dir in swiftcDirs where fm.isExecutableFile(atPath: dir + "/llvm-objdump") {
            return dir + "/llvm-objdump"
        }
        return nil
    }()

    static let skipReason: Comment =
        "needs llvm-objdump, which is not on PATH nor next to swiftc: decode lengths are NOT checked against it"

    /// One disassembled instruction: where its bytes start in `Listing.bytes`, its length, and
    /// whether llvm-objdump decoded it (not `<unknown>`).
    struct Line {
        var offset: Int
        var length: Int
        var decoded: Bool
        var runEnd: Int
        var text: Substring
    }

    struct Listing {
        var bytes: [UInt8] = []
        var lines: [Line] = []
    }

    static let prefixMnemonics: Set<String> = [
        "lock", "xacquire", "xrelease", "rep", "repne", "repe", "repz", "repnz", "data16", "data32", "addr32",
        "addr16", "cs", "ds", "es", "ss", "fs", "gs", "notrack", "bnd", "rex64",
    ]

    /// Runs llvm-objdump and parses at most `limit` instructions.
    static func disassemble(_ file: String, arguments: [String], limit: Int) throws -> Listing {
        guard let tool = path else { return Listing() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments + ["-d", file]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return parse(Array(data), limit: limit)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// Parses lines `   addr: xx xx xx   \tmnemonic\toperands`.
    static func parse(_ text: [UInt8], limit: Int) -> Listing {
        var listing = Listing()
        var lineStart = 0
        var nextAddress: UInt64 = .max
        let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), colon = UInt8(ascii: ":")
        let newline = UInt8(ascii: "\n")
        func closeRun() {
            let end = listing.bytes.count
            var i = listing.lines.count - 1
            while i >= 0 && listing.lines[i].runEnd == -1 { listing.lines[i].runEnd = end; i -= 1 }
        }
        while lineStart < text.count && listing.lines.count < limit {
            var lineEnd = lineStart
            while lineEnd < text.count && text[lineEnd] != newline { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            var i = lineStart
            while i < lineEnd && text[i] == space { i += 1 }
            var address: UInt64 = 0
            var digits = 0
            while i < lineEnd, let v = hexValue(text[i]) { address = address &<< 4 | UInt64(v); i += 1; digits += 1 }
            guard digits > 0, i + 1 < lineEnd, text[i] == colon, text[i + 1] == space else { continue }
            i += 2
            let offset = listing.bytes.count
            var count = 0
            while i + 2 < lineEnd, let hi = hexValue(text[i]), let lo = hexValue(text[i + 1]), text[i + 2] == space
                || text[i + 2] == tab
            {
                listing.bytes.append(hi << 4 | lo)
                count += 1
                i += 3
                if text[i - 1] == tab { break }
            }
            guard count > 0 else { continue }
            while i < lineEnd && (text[i] == space || text[i] == tab) { i += 1 }
            if address != nextAddress {
                // A gap: the lookahead of the previous run stops here.
                let bytesSoFar = listing.bytes.count - count
                var j = listing.lines.count - 1
                while j >= 0 && listing.lines[j].runEnd == -1 { listing.lines[j].runEnd = bytesSoFar; j -= 1 }
            }
            let contiguous = address == nextAddress
            nextAddress = address &+ UInt64(count)
            let mnemonicStart = i
            let decoded = !(i < lineEnd && text[i] == UInt8(ascii: "<"))
            let textSlice = String(decoding: text[mnemonicStart..<lineEnd], as: UTF8.self)
            // llvm-objdump prints some prefixes (lock, xacquire, xrelease, rep, data16...) as a line of
            // their own: fold them into the instruction that follows.
            if contiguous, let last = listing.lines.last, last.decoded, last.runEnd == -1,
               last.offset + last.length == offset, prefixMnemonics.contains(String(last.text))
            {
                listing.lines[listing.lines.count - 1].length += count
                listing.lines[listing.lines.count - 1].decoded = decoded
                listing.lines[listing.lines.count - 1].text = Substring(String(last.text) + " " + textSlice)
                continue
            }
            listing.lines.append(Line(offset: offset, length: count, decoded: decoded, runEnd: -1,
                                      text: Substring(textSlice)))
        }
        closeRun()
        return listing
    }

    struct Agreement: CustomStringConvertible {
        var compared = 0
        var undefined = 0
        var objdumpUnknown = 0
        var mismatches: [String] = []
        var mismatchCount = 0
        /// llvm-objdump's mnemonic for each instruction the decoder calls `.undefined`.
        var undefinedMnemonics: [String: Int] = [:]
        var description: String {
            "compared \(compared), undefined (not compared) \(undefined), llvm <unknown> \(objdumpUnknown), "
                + "mismatches \(mismatchCount)"
        }
        var topUndefined: String {
            undefinedMnemonics.sorted { $0.value > $1.value }.prefix(30).map { "\($0.key) \($0.value)" }
                .joined(separator: ", ")
        }
    }

    static func compare(_ listing: Listing, mode: CodeMode) -> Agreement {
        var result = Agreement()
        listing.bytes.withUnsafeBytes { all in
            for line in listing.lines {
                guard line.decoded else { result.objdumpUnknown += 1; continue }
                let end = min(line.offset + 15, max(line.runEnd, line.offset + line.length))
                let window = UnsafeRawBufferPointer(rebasing: all[line.offset..<end])
                switch Decoder.decode(window, mode: mode) {
                case .undefined:
                    result.undefined += 1
                    let mnemonic = line.text.split(whereSeparator: { $0 == "\t" || $0 == " " }).first.map(String.init) ?? ""
                    result.undefinedMnemonics[mnemonic, default: 0] += 1
                case .instruction(let insn) where Int(insn.length) == line.length:
                    result.compared += 1
                case let other:
                    result.compared += 1
                    result.mismatchCount += 1
                    if result.mismatches.count < 25 {
                        let hex = all[line.offset..<end].map { String(format: "%02x", $0) }.joined(separator: " ")
                        var got = "\(other)"
                        if case .instruction(let insn) = other { got = "length \(insn.length) \(insn.operation)" }
                        result.mismatches.append("[\(hex)] llvm: \(line.length) \(line.text) | decoder: \(got)")
                    }
                }
            }
        }
        return result
    }
}

@Suite("Decode lengths agree with llvm-objdump")
struct ObjdumpAgreementTests {
    static let binaries64: [(path: String, limit: Int)] = [
        ("/usr/bin/make", 50_000),
        ("/bin/ls", 30_000),
        ("/usr/bin/bash", 60_000),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", 60_000),
    ]

    @Test(.enabled(if: Objdump.path != nil, Objdump.skipReason))
    func lengths64() throws {
        var total = Objdump.Agreement()
        var files = 0
        for (path, limit) in Self.binaries64 where FileManager.default.fileExists(atPath: path) {
            let listing = try Objdump.disassemble(path, arguments: [], limit: limit)
            if listing.lines.isEmpty {
                print("WARNING: llvm-objdump printed no instructions for \(path); it is not part of the corpus")
                continue
            }
            let agreement = Objdump.compare(listing, mode: .bits64)
            print("llvm-objdump vs decoder, 64-bit, \(path): \(agreement)")
            for m in agreement.mismatches { print("  mismatch \(m)") }
            total.compared += agreement.compared
            total.undefined += agreement.undefined
            total.objdumpUnknown += agreement.objdumpUnknown
            total.mismatchCount += agreement.mismatchCount
            total.mismatches += agreement.mismatches
            total.undefinedMnemonics.merge(agreement.undefinedMnemonics, uniquingKeysWith: +)
            files += 1
        }
        print("llvm-objdump (\(Objdump.path ?? "")) vs decoder, 64-bit total over \(files) files: \(total)")
        print("  undefined by llvm mnemonic: \(total.topUndefined)")
        #expect(files > 0, "none of the corpus binaries exist")
        #expect(total.compared > 50_000)
        #expect(total.mismatchCount == 0, "\(total.mismatches.prefix(25).joined(separator: "\n"))")
    }

    @Test(.enabled(if: Objdump.path != nil, Objdump.skipReason),
          arguments: [(CodeMode.bits32, "i386-unknown-linux-gnu"), (CodeMode.bits16, "i386-unknown-unknown-code16")])
    func lengthsLegacy(mode: CodeMode, triple: String) throws {
        let path = "/bin/ls"
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("\(path) is missing")
            return
        }
        let listing = try Objdump.disassemble(path, arguments: ["--triple=\(triple)"], limit: 40_000)
        let agreement = Objdump.compare(listing, mode: mode)
        print("llvm-objdump vs decoder, \(mode) (\(triple)), \(path): \(agreement)")
        print("  undefined by llvm mnemonic: \(agreement.topUndefined)")
        for m in agreement.mismatches { print("  mismatch \(m)") }
        #expect(agreement.compared > 10_000)
        #expect(agreement.mismatchCount == 0, "\(agreement.mismatches.joined(separator: "\n"))")
    }
}

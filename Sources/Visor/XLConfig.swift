// Domain configuration files in Xen's xl.cfg syntax (man xl.cfg(5)): what `visor run` accepts in
// place of a kernel. A small tokenizer and a recursive-descent parser after libxlutil's cfg grammar
// (libxlu_cfg_l.l, libxlu_cfg_y.y) turn the text into settings; a validator then checks each key
// Visor implements, warns about the common Xen keys it does not, and refuses everything else.
//
// Every problem is an `XLConfigError` naming the file, the line and the key. Nothing here traps
// on hostile input: numbers saturate instead of overflowing, lists nest at most
// `XLConfig.maximumListDepth` deep, and files and cpu lists have size limits.

import Foundation
import VisorSched

/// One domain as an xl.cfg file describes it, validated.
public struct DomainSpec: Sendable, Equatable {
    /// `name` (required, as in xl): 1-64 characters of `[A-Za-z0-9_.-]`.
    public var name: String
    /// `kernel`: a path (relative paths resolved against the config file's directory) or a
    /// built-in guest name, left as written for `Launcher.resolveKernel` to decide.
    public var kernel: String
    /// `ramdisk`: a path resolved the same way; a Linux kernel's initial RAM disk (a multiboot
    /// kernel gets it as its first module).
    public var ramdisk: String?
    /// `cmdline`, else `root` and `extra` as xl combines them ("root=R E"); "" when none.
    public var commandLine: String
    /// `memory` in MiB (default 128).
    public var memoryMiB: UInt64
    /// `vcpus` (default 1).
    public var vcpus: Int
    /// `maxvcpus`: when given, equal to `vcpus` (Visor does not hot-plug vCPUs).
    public var maxVCPUs: Int?
    /// `cpus`: element i is vCPU i's hard-affinity mask in xl's cpu-list syntax ("0-3,^1"). The
    /// string form of the key gives every vCPU the same mask, so it is stored once per vCPU; the
    /// list form may be shorter than `vcpus`, and the vCPUs past its end may run anywhere.
    public var hardAffinity: [String]?
    /// `cpus_soft`: the soft-affinity masks, stored as `hardAffinity` is.
    public var softAffinity: [String]?
    /// `cpu_weight`, 1-65535 (the scheduler's default when nil).
    public var weight: Int?
    /// `cap`: percent of one pCPU, 0-100 × vcpus; 0 means no cap.
    public var cap: Int?
    /// `engine` (Visor's own key): "kvm", "interp" or "bt"; nil leaves the choice to the command line.
    public var engine: String?
    /// `on_poweroff`, `on_reboot`, `on_crash`: what `visor serve` does when the domain ends
    /// that way (xl's defaults: destroy, restart, destroy). `visor run` ends on any of them.
    public var onPowerOff: DomainEndAction
    public var onReboot: DomainEndAction
    public var onCrash: DomainEndAction
    /// `disk`: the disks in list order, each a raw image on virtio-blk.
    public var disks: [DiskConfiguration] = []
    /// `vif`: the network interfaces in list order, each virtio-net on a host TAP.
    public var networks: [NetworkConfiguration] = []
    /// `console` (Visor's own key): "serial" or "virtio"; nil leaves the choice to the command line.
    public var console: ConsoleDevice?
    /// The configuration file, for messages.
    public var path: String

    /// Guest RAM in bytes.
    public var memoryBytes: UInt64 { memoryMiB << 20 }

    public init(name: String, kernel: String, ramdisk: String? = nil, commandLine: String = "",
                memoryMiB: UInt64 = XLConfig.defaultMemoryMiB, vcpus: Int = 1, maxVCPUs: Int? = nil,
                hardAffinity: [String]? = nil, softAffinity: [String]? = nil, weight: Int? = nil, cap: Int? = nil,
                engine: String? = nil, onPowerOff: DomainEndAction = .destroy, onReboot: DomainEndAction = .restart,
                onCrash: DomainEndAction = .destroy, path: String) {
        self.onPowerOff = onPowerOff; self.onReboot = onReboot; self.onCrash = onCrash
        self.name = name; self.kernel = kernel; self.ramdisk = ramdisk; self.commandLine = commandLine
        self.memoryMiB = memoryMiB; self.vcpus = vcpus; self.maxVCPUs = maxVCPUs
        self.hardAffinity = hardAffinity; self.softAffinity = softAffinity
        self.weight = weight; self.cap = cap; self.engine = engine; self.path = path
    }
}

/// What the toolstack does with a domain that ended by itself (xl.cfg's `on_poweroff`,
/// `on_reboot`, `on_crash`).
public enum DomainEndAction: String, Sendable, Equatable, CaseIterable, Codable {
    /// Drop it: its memory and threads are returned (xl's default for power-off and crash).
    case destroy
    /// Boot it again from its configuration, under the same name and a new domain ID (xl's
    /// default for reboot).
    case restart
    /// Keep it listed, ended, with how it ended (a crash's register dump) until `visor destroy`.
    case preserve
}

/// A problem in a domain configuration: `a.cfg:7: cpu_weight: 70000 is out of range 1-65535`.
public struct XLConfigError: Error, CustomStringConvertible, Equatable {
    /// The configuration file.
    public var path: String
    /// The line the problem is on; nil for problems of the whole file (a missing key, an unreadable file).
    public var line: Int?
    /// The key the problem concerns, when there is one.
    public var key: String?
    public var message: String

    public init(path: String, line: Int? = nil, key: String? = nil, message: String) {
        self.path = path; self.line = line; self.key = key; self.message = message
    }

    public var description: String {
        var text = path
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

/// Reads xl.cfg files into `DomainSpec`s.
public enum XLConfig {
    /// The keys Visor implements.
    public static let understoodKeys = [
        "name", "kernel", "ramdisk", "cmdline", "extra", "root", "memory", "vcpus", "maxvcpus",
        "cpus", "cpus_soft", "cpu_weight", "cap", "engine", "on_poweroff", "on_reboot", "on_crash", "disk",
        "vif",
        "console",
    ]
    /// Xen keys common in real configurations that Visor accepts with a warning and does not act on.
    public static let ignoredKeys = [
        "type", "builder", "vfb", "serial",
        "boot", "uuid", "pool", "device_model_version", "sdl", "vnc", "period", "extratime", "slice", "latency",
    ]

    public static let defaultMemoryMiB: UInt64 = 128
    public static let memoryRangeMiB: ClosedRange<UInt64> = 8...(1 << 20)
    public static let weightRange: ClosedRange<UInt64> = 1...65535
    /// Lists inside lists are legal xl syntax; no key Visor implements needs more than one level.
    public static let maximumListDepth = 8
    /// Larger files are refused before they are read: a domain configuration is a few hundred bytes.
    public static let maximumFileBytes = 1 << 20
    /// Longer cpu lists are refused (256 pCPUs written out one by one fit comfortably).
    public static let maximumCPUListLength = 4096

    /// Reads and validates the configuration file at `path`.
    public static func load(path: String) throws(XLConfigError) -> (spec: DomainSpec, warnings: [String]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw XLConfigError(path: path, message: "the domain configuration file does not exist")
        }
        guard !isDirectory.boolValue else {
            throw XLConfigError(path: path, message: "is a directory, not a domain configuration file")
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int,
           size > maximumFileBytes {
            throw XLConfigError(path: path, message: "is \(size) bytes long; a domain configuration may have at most \(maximumFileBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw XLConfigError(path: path, message: "the domain configuration file cannot be read")
        }
        guard data.count <= maximumFileBytes else {
            throw XLConfigError(path: path, message: "is \(data.count) bytes long; a domain configuration may have at most \(maximumFileBytes)")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw XLConfigError(path: path, message: "is not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// Parses and validates configuration text; `path` names it in messages and anchors relative paths.
    public static func parse(_ text: String, path: String) throws(XLConfigError) -> (spec: DomainSpec, warnings: [String]) {
        var parser = XLConfigParser(bytes: Array(text.utf8), path: path)
        let settings = try parser.parseSettings()
        var validator = XLConfigValidator(path: path)
        let spec = try validator.validate(settings)
        return (spec, validator.warnings)
    }

    /// Parses and validates a configuration given as a JSON object whose keys are xl.cfg's, such
    /// as `{"name": "a", "kernel": "cpuhog", "memory": 16, "cpus": ["0", "1"]}` (the API's
    /// `POST /domains` with `Content-Type: application/json`): JSON numbers, strings and arrays
    /// stand for xl's numbers, strings and lists, and the same validator gives the same messages,
    /// without line numbers. Keys are checked in sorted order (a JSON object has none).
    public static func parse(json bytes: [UInt8], path: String) throws(XLConfigError) -> (spec: DomainSpec, warnings: [String]) {
        let object: [String: XLJSONValue]
        do {
            object = try JSONDecoder().decode([String: XLJSONValue].self, from: Data(bytes))
        } catch {
            throw XLConfigError(path: path, message: "the body is not a JSON object of xl.cfg keys, such as "
                                + #"{"name": "a", "kernel": "cpuhog", "memory": 16}"#)
        }
        var settings: [XLSetting] = []
        for key in object.keys.sorted() {
            guard let json = object[key] else { continue }
            let value: XLValue
            do {
                value = try json.xlValue(depth: 0)
            } catch {
                throw XLConfigError(path: path, key: shown(key), message: error.message)
            }
            settings.append(XLSetting(key: key, line: nil, value: value))
        }
        var validator = XLConfigValidator(path: path)
        let spec = try validator.validate(settings)
        return (spec, validator.warnings)
    }
}

/// A JSON value as a configuration's JSON form may hold, before it becomes an `XLValue`.
fileprivate indirect enum XLJSONValue: Decodable {
    case unsigned(UInt64)
    case string(String)
    case list([XLJSONValue])
    /// What xl.cfg has no equivalent for, described: true, null, -3, 1.5, an object.
    case other(String)

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .other("null")
        } else if let b = try? c.decode(Bool.self) {
            self = .other(b ? "true" : "false")
        } else if let u = try? c.decode(UInt64.self) {
            self = .unsigned(u)
        } else if let i = try? c.decode(Int64.self) {
            self = .other("the negative number \(i)")
        } else if let d = try? c.decode(Double.self) {
            self = .other("the number \(d), which is not a whole number of 0 to \(UInt64.max)")
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let l = try? c.decode([XLJSONValue].self) {
            self = .list(l)
        } else {
            self = .other("an object")
        }
    }

    struct Problem: Error { var message: String }

    func xlValue(depth: Int) throws(Problem) -> XLValue {
        switch self {
        case .unsigned(let u): return .integer(text: String(u), value: u)
        case .string(let s):
            // xl.cfg text cannot hold a NUL in a string; neither can its JSON form.
            guard !s.unicodeScalars.contains("\0") else { throw Problem(message: "a NUL character inside a string") }
            return .string(s)
        case .list(let items):
            guard depth < XLConfig.maximumListDepth else {
                throw Problem(message: "lists nested more than \(XLConfig.maximumListDepth) deep")
            }
            var values: [XLValue] = []
            for item in items { values.append(try item.xlValue(depth: depth + 1)) }
            return .list(values)
        case .other(let what):
            throw Problem(message: "expected a number, a string or a list, found \(shown(what))")
        }
    }
}

// MARK: - Values and settings

/// A value as written: xl has integers, strings and (possibly nested) lists.
fileprivate indirect enum XLValue: Equatable {
    /// `value` is nil when the integer does not fit in 64 bits; `text` is as written.
    case integer(text: String, value: UInt64?)
    case string(String)
    case list([XLValue])

    var kindDescription: String {
        switch self {
        case .integer(let text, _): return "the number \(shown(text))"
        case .string(let s): return "the string \(shownQuoted(s))"
        case .list: return "a list"
        }
    }
}

/// One `key = value` line.
fileprivate struct XLSetting {
    var key: String
    /// nil for a setting from a configuration's JSON form.
    var line: Int?
    var value: XLValue
}

/// At most 60 characters of `text`, so that a hostile line cannot flood a message.
fileprivate func shown(_ text: String) -> String {
    text.count > 60 ? String(text.prefix(57)) + "..." : text
}

/// `text` quoted with control characters escaped, at most about 60 characters.
fileprivate func shownQuoted(_ text: String) -> String {
    shown(text).debugDescription
}

// MARK: - Tokenizer

fileprivate enum XLTokenKind: Equatable {
    case key(String)
    case integer(text: String, value: UInt64?)
    case string(String)
    case equals, comma, semicolon, open, close, newline, end

    var description: String {
        switch self {
        case .key(let k): return "'\(shown(k))'"
        case .integer(let text, _): return "the number \(shown(text))"
        case .string(let s): return "the string \(shownQuoted(s))"
        case .equals: return "'='"
        case .comma: return "','"
        case .semicolon: return "';'"
        case .open: return "'['"
        case .close: return "']'"
        case .newline: return "the end of the line"
        case .end: return "the end of the file"
        }
    }
}

fileprivate struct XLToken {
    var kind: XLTokenKind
    var line: Int
}

/// Splits xl.cfg text (UTF-8 bytes) into tokens. Lexical errors carry the line but no key: the
/// parser adds the key it was reading.
fileprivate struct XLConfigLexer {
    let bytes: [UInt8]
    let path: String
    var index = 0
    var line = 1

    init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    private func fail(_ message: String, line: Int? = nil) -> XLConfigError {
        XLConfigError(path: path, line: line ?? self.line, message: message)
    }

    private static func isKeyStart(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x5f   // A-Z a-z _
    }
    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    private static func isKeyPart(_ b: UInt8) -> Bool { isKeyStart(b) || isDigit(b) }
    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    mutating func next() throws(XLConfigError) -> XLToken {
        // Blanks and comments: `#` runs to the end of the line (strings are handled below, so a
        // `#` inside quotes never gets here).
        while index < bytes.count {
            let b = bytes[index]
            if b == 0x20 || b == 0x09 || b == 0x0d || b == 0x0c || b == 0x0b {
                index += 1
            } else if b == 0x23 {
                while index < bytes.count, bytes[index] != 0x0a { index += 1 }
            } else {
                break
            }
        }
        guard index < bytes.count else { return XLToken(kind: .end, line: line) }
        let b = bytes[index]
        let start = line
        switch b {
        case 0x0a:
            index += 1
            line += 1
            return XLToken(kind: .newline, line: start)
        case 0x3d: index += 1; return XLToken(kind: .equals, line: start)
        case 0x2c: index += 1; return XLToken(kind: .comma, line: start)
        case 0x3b: index += 1; return XLToken(kind: .semicolon, line: start)
        case 0x5b: index += 1; return XLToken(kind: .open, line: start)
        case 0x5d: index += 1; return XLToken(kind: .close, line: start)
        case 0x22, 0x27: return XLToken(kind: .string(try quotedString()), line: start)
        case 0x2d:
            throw fail("unexpected '-': numbers cannot be negative")
        case 0x00:
            throw fail("unexpected NUL byte")
        default:
            if Self.isDigit(b) { return XLToken(kind: try integer(), line: start) }
            if Self.isKeyStart(b) {
                let from = index
                while index < bytes.count, Self.isKeyPart(bytes[index]) { index += 1 }
                return XLToken(kind: .key(String(decoding: bytes[from..<index], as: UTF8.self)), line: start)
            }
            throw fail("unexpected character \(characterDescription(at: index))")
        }
    }

    /// The character at `position` for a message: printable ones quoted, others as U+XXXX.
    private func characterDescription(at position: Int) -> String {
        let end = min(position + 4, bytes.count)
        guard let scalar = String(decoding: bytes[position..<end], as: UTF8.self).unicodeScalars.first else {
            return "byte 0x\(String(bytes[position], radix: 16))"
        }
        if scalar.properties.generalCategory == .control || scalar.value == 0xfffd {
            return "U+" + String(scalar.value, radix: 16, uppercase: true)
        }
        return "'\(scalar)'"
    }

    /// An integer: decimal or `0x` hex. The whole run of letters, digits, '_' and '.' is taken,
    /// so `512M` or `1.5` is one bad token rather than a number followed by garbage.
    private mutating func integer() throws(XLConfigError) -> XLTokenKind {
        let from = index
        while index < bytes.count, Self.isKeyPart(bytes[index]) || bytes[index] == 0x2e { index += 1 }
        let word = bytes[from..<index]
        let text = String(decoding: word, as: UTF8.self)
        var digits = word[...]
        var radix: UInt64 = 10
        if word.count > 2, word[from] == 0x30, word[from + 1] == 0x78 || word[from + 1] == 0x58 {
            digits = word.dropFirst(2)
            radix = 16
        }
        var value: UInt64? = 0
        for d in digits {
            guard let v = Self.hexValue(d), UInt64(v) < radix else {
                throw fail("\(shown(text)) is not an integer (write decimal digits or 0x and hex digits, with no unit)")
            }
            if let current = value {
                let (shifted, o1) = current.multipliedReportingOverflow(by: radix)
                let (sum, o2) = shifted.addingReportingOverflow(UInt64(v))
                value = o1 || o2 ? nil : sum
            }
        }
        return .integer(text: text, value: value)
    }

    /// A string in double or single quotes, on one line, with C-like escapes. (xl itself takes
    /// single-quoted strings literally; Visor reads escapes in both, as its documentation says.)
    private mutating func quotedString() throws(XLConfigError) -> String {
        let quote = bytes[index]
        let startLine = line
        index += 1
        var out: [UInt8] = []
        while true {
            guard index < bytes.count, bytes[index] != 0x0a else {
                throw fail("unterminated string: a string must end on the line it starts", line: startLine)
            }
            let b = bytes[index]
            index += 1
            if b == quote { break }
            if b == 0x00 { throw fail("a NUL byte inside a string", line: startLine) }
            guard b == 0x5c else { out.append(b); continue }   // backslash
            guard index < bytes.count, bytes[index] != 0x0a else {
                throw fail("unterminated string: a string must end on the line it starts", line: startLine)
            }
            let e = bytes[index]
            index += 1
            switch e {
            case 0x22, 0x27, 0x5c: out.append(e)        // \" \' \\
            case 0x6e: out.append(0x0a)                  // \n
            case 0x74: out.append(0x09)                  // \t
            case 0x72: out.append(0x0d)                  // \r
            case 0x61: out.append(0x07)                  // \a
            case 0x62: out.append(0x08)                  // \b
            case 0x66: out.append(0x0c)                  // \f
            case 0x76: out.append(0x0b)                  // \v
            case 0x78:                                   // \xHH: exactly two hex digits
                guard index + 1 < bytes.count, let hi = Self.hexValue(bytes[index]),
                      let lo = Self.hexValue(bytes[index + 1]) else {
                    throw fail("\\x in a string must be followed by two hex digits", line: startLine)
                }
                index += 2
                guard hi != 0 || lo != 0 else { throw fail("a string cannot contain \\x00", line: startLine) }
                out.append(hi << 4 | lo)
            default:
                let shownEscape = e < 0x80 && e >= 0x20 ? "\\\(Character(Unicode.Scalar(e)))" : "a backslash"
                throw fail("\(shownEscape) is not an escape: use \\n \\t \\\" \\' \\\\ or \\xHH", line: startLine)
            }
        }
        // \xHH escapes may spell out UTF-8 byte by byte; the result must still be UTF-8.
        guard let text = String(validating: out, as: UTF8.self) else {
            throw fail("the string's \\x escapes do not make UTF-8 text", line: startLine)
        }
        return text
    }
}

// MARK: - Parser

/// libxlutil's grammar: `setting := key '=' value (newline | ';' | end)`,
/// `value := integer | string | '[' (value (',' value)* ','?)? ']'`, with newlines allowed
/// anywhere inside a list.
fileprivate struct XLConfigParser {
    var lexer: XLConfigLexer
    let path: String
    /// The key whose value is being read, so that errors inside a value name it.
    var currentKey: String?
    var lookahead: XLToken?

    init(bytes: [UInt8], path: String) {
        lexer = XLConfigLexer(bytes: bytes, path: path)
        self.path = path
    }

    private func fail(_ message: String, line: Int) -> XLConfigError {
        XLConfigError(path: path, line: line, key: currentKey, message: message)
    }

    private mutating func peek() throws(XLConfigError) -> XLToken {
        if let t = lookahead { return t }
        do {
            let t = try lexer.next()
            lookahead = t
            return t
        } catch {
            var e = error
            if e.key == nil { e.key = currentKey }
            throw e
        }
    }

    private mutating func take() throws(XLConfigError) -> XLToken {
        let t = try peek()
        lookahead = nil
        return t
    }

    mutating func parseSettings() throws(XLConfigError) -> [XLSetting] {
        var settings: [XLSetting] = []
        var firstLine: [String: Int] = [:]
        while true {
            currentKey = nil
            let t = try take()
            switch t.kind {
            case .end:
                return settings
            case .newline, .semicolon:
                continue
            case .key(let key):
                let keyLine = t.line
                currentKey = shown(key)   // a hostile key must not flood messages
                let equals = try take()
                guard equals.kind == .equals else {
                    throw fail("expected '=' after the key, found \(equals.kind.description)", line: equals.line)
                }
                let value = try parseValue(depth: 0)
                let after = try take()
                switch after.kind {
                case .newline, .semicolon, .end: break
                default:
                    throw fail("expected the end of the line or ';' after the value, found \(after.kind.description)",
                               line: after.line)
                }
                // xl lets the last of several settings of one key win; a repeated key is more
                // likely a mistake than a wish, so Visor refuses it and names both lines.
                if let first = firstLine[key] {
                    throw fail("given twice, on line \(first) and on line \(keyLine)", line: keyLine)
                }
                firstLine[key] = keyLine
                settings.append(XLSetting(key: key, line: keyLine, value: value))
            default:
                throw fail("expected a setting such as name = \"guest\", found \(t.kind.description)", line: t.line)
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(XLConfigError) -> XLValue {
        let t = try take()
        switch t.kind {
        case .integer(let text, let value): return .integer(text: text, value: value)
        case .string(let s): return .string(s)
        case .open: return try parseList(openedOn: t.line, depth: depth + 1)
        default:
            throw fail("expected a value (a number, a \"string\" or a [list]), found \(t.kind.description)", line: t.line)
        }
    }

    private mutating func skipNewlines() throws(XLConfigError) {
        while try peek().kind == .newline { _ = try take() }
    }

    /// The rest of a list after its '['.
    private mutating func parseList(openedOn line: Int, depth: Int) throws(XLConfigError) -> XLValue {
        guard depth <= XLConfig.maximumListDepth else {
            throw fail("lists nested more than \(XLConfig.maximumListDepth) deep", line: line)
        }
        var items: [XLValue] = []
        while true {
            try skipNewlines()
            let t = try peek()
            switch t.kind {
            case .close:
                _ = try take()
                return .list(items)
            case .end:
                throw fail("unterminated list: the '[' on line \(line) has no ']'", line: line)
            case .integer, .string, .open:
                items.append(try parseValue(depth: depth))
            default:
                throw fail("expected a value or ']' in the list opened on line \(line), found \(t.kind.description)"
                           + (t.line != line ? " on line \(t.line)" : ""), line: line)
            }
            try skipNewlines()
            let separator = try take()
            switch separator.kind {
            case .comma: continue
            case .close: return .list(items)
            case .end:
                throw fail("unterminated list: the '[' on line \(line) has no ']'", line: line)
            default:
                throw fail("unterminated list: the '[' on line \(line) has no ']' (found \(separator.kind.description)"
                           + " on line \(separator.line) where ',' or ']' should be)", line: line)
            }
        }
    }
}

// MARK: - Validation

/// Checks each setting against what Visor implements and assembles the `DomainSpec`.
fileprivate struct XLConfigValidator {
    let path: String
    var warnings: [String] = []

    init(path: String) { self.path = path }

    private func fail(_ s: XLSetting, _ message: String) -> XLConfigError {
        XLConfigError(path: path, line: s.line, key: shown(s.key), message: message)
    }

    private mutating func warn(_ s: XLSetting, _ message: String) {
        warnings.append("\(path)\(s.line.map { ":\($0)" } ?? ""): \(s.key): \(message)")
    }

    // Typed readers.

    private func string(_ s: XLSetting) throws(XLConfigError) -> String {
        guard case .string(let text) = s.value else {
            throw fail(s, "expected a string in quotes, found \(s.value.kindDescription)")
        }
        return text
    }

    private func nonEmptyString(_ s: XLSetting) throws(XLConfigError) -> String {
        let text = try string(s)
        guard !text.isEmpty else { throw fail(s, "is empty") }
        return text
    }

    /// The integer (nil when it exceeds 64 bits: out of every range).
    private func integer(_ s: XLSetting) throws(XLConfigError) -> (text: String, value: UInt64?) {
        guard case .integer(let text, let value) = s.value else {
            var message = "expected a number, found \(s.value.kindDescription)"
            if case .string(let t) = s.value, !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                message += " (write it without quotes)"
            }
            throw fail(s, message)
        }
        return (text, value)
    }

    private func integer(_ s: XLSetting, in range: ClosedRange<UInt64>, _ note: String = "") throws(XLConfigError) -> Int {
        let (text, value) = try integer(s)
        return try checked(s, text: text, value: value, in: range, note)
    }

    private func checked(_ s: XLSetting, text: String, value: UInt64?, in range: ClosedRange<UInt64>,
                         _ note: String = "") throws(XLConfigError) -> Int {
        guard let value, range.contains(value), let result = Int(exactly: value) else {
            throw fail(s, "\(shown(text)) is out of range \(range.lowerBound)-\(range.upperBound)\(note)")
        }
        return result
    }

    /// `on_poweroff` / `on_reboot` / `on_crash`: one of `DomainEndAction`'s names. xl's other
    /// actions are refused by name, so a configuration never means something Visor does not do.
    private func endAction(_ s: XLSetting) throws(XLConfigError) -> DomainEndAction {
        let text = try string(s)
        if let action = DomainEndAction(rawValue: text) { return action }
        let choices = DomainEndAction.allCases.map(\.rawValue).joined(separator: ", ")
        switch text {
        case "rename-restart", "coredump-destroy", "coredump-restart", "soft-reset":
            throw fail(s, "\(shownQuoted(text)) is an xl action Visor does not have; use \(choices)")
        default:
            throw fail(s, "\(shownQuoted(text)) is not an action; use \(choices)")
        }
    }

    /// `cpus` / `cpus_soft`: a cpu-list string (or a bare number), or a list of them.
    /// `disk = [ 'spec', ... ]`: a list of xl disk specifications (a lone string is one disk).
    private func diskList(_ s: XLSetting) throws(XLConfigError) -> [DiskConfiguration] {
        let items: [XLValue]
        switch s.value {
        case .string: items = [s.value]
        case .list(let list): items = list
        case .integer: throw fail(s, "expected a list of disk specifications such as [ 'disk.img,raw,xvda,rw' ]")
        }
        guard items.count <= VirtioPlacement.maximumDevices else {
            throw fail(s, "\(items.count) disks: a domain may have at most \(VirtioPlacement.maximumDevices)")
        }
        var disks: [DiskConfiguration] = []
        for (i, item) in items.enumerated() {
            guard case .string(let text) = item else {
                throw fail(s, "element \(i): expected a disk specification in quotes, such as 'disk.img,raw,xvda,rw'")
            }
            do {
                disks.append(try DiskConfiguration(xlSpec: text, resolve: resolvedPath))
            } catch {
                throw fail(s, "element \(i): \(error.description)")
            }
        }
        return disks
    }

    /// `vif = [ 'spec', ... ]`: a list of xl vif specifications (a lone string is one).
    private func vifList(_ s: XLSetting) throws(XLConfigError) -> [NetworkConfiguration] {
        let items: [XLValue]
        switch s.value {
        case .string: items = [s.value]
        case .list(let list): items = list
        case .integer: throw fail(s, "expected a list of vif specifications such as [ 'bridge=br0' ]")
        }
        guard items.count <= VirtioPlacement.maximumDevices else {
            throw fail(s, "\(items.count) interfaces: a domain may have at most \(VirtioPlacement.maximumDevices) virtio devices")
        }
        var networks: [NetworkConfiguration] = []
        for (i, item) in items.enumerated() {
            guard case .string(let text) = item else {
                throw fail(s, "element \(i): expected a vif specification in quotes, such as 'bridge=br0,mac=02:00:00:00:00:01'")
            }
            do {
                networks.append(try NetworkConfiguration(xlSpec: text))
            } catch {
                throw fail(s, "element \(i): \(error.description)")
            }
        }
        return networks
    }

    private func affinity(_ s: XLSetting) throws(XLConfigError) -> (masks: [String], perVCPU: Bool) {
        switch s.value {
        case .string, .integer:
            return ([try cpuList(s, s.value, element: nil)], false)
        case .list(let items):
            guard !items.isEmpty else {
                throw fail(s, "the list is empty: give one cpu list per vCPU, or leave the key out")
            }
            var masks: [String] = []
            for (i, item) in items.enumerated() { masks.append(try cpuList(s, item, element: i)) }
            return (masks, true)
        }
    }

    private func cpuList(_ s: XLSetting, _ value: XLValue, element: Int?) throws(XLConfigError) -> String {
        let which = element.map { "element \($0) (vCPU \($0)): " } ?? ""
        let text: String
        switch value {
        case .string(let t): text = t
        case .integer(let t, let v):
            guard let v else { throw fail(s, "\(which)\(shown(t)) is not a pCPU number") }
            text = String(v)
        case .list:
            throw fail(s, "\(which)a list inside the list: each element is one vCPU's cpu list, such as \"0-3,^1\"")
        }
        guard text.utf8.count <= XLConfig.maximumCPUListLength else {
            throw fail(s, "\(which)the cpu list is \(text.utf8.count) characters long; at most \(XLConfig.maximumCPUListLength)")
        }
        // xl skips blanks around numbers; the stored mask has none, so every consumer can parse it.
        let compact = String(text.unicodeScalars.filter { $0 != " " && $0 != "\t" })
        guard let set = PCPUSet(cpuList: compact, poolSize: PCPUSet.capacity) else {
            throw fail(s, "\(which)\(shownQuoted(text)) is not a cpu list: write pCPU numbers 0-\(PCPUSet.capacity - 1), "
                          + "ranges and exclusions such as \"0-3,^1\" or \"all,^7\" (NUMA node terms are not supported)")
        }
        guard !set.isEmpty else { throw fail(s, "\(which)\(shownQuoted(text)) selects no pCPU") }
        return compact
    }

    private static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == 0x5f || b == 0x2e || b == 0x2d
        }
    }

    // Paths.

    /// The directory of the configuration file, "" when it has none (the current directory).
    private var configDirectory: String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// `text` as a path: relative ones are taken from the configuration file's directory.
    private func resolvedPath(_ text: String) -> String {
        if text.hasPrefix("/") || configDirectory.isEmpty { return text }
        return configDirectory.hasSuffix("/") ? configDirectory + text : configDirectory + "/" + text
    }

    /// A kernel is a path when it has a "/", ends in ".elf" (as `Launcher.resolveKernel` judges) or
    /// names a file beside the configuration; otherwise a built-in guest name, left as written.
    private func resolvedKernel(_ text: String) -> String {
        let candidate = resolvedPath(text)
        if text.contains("/") || text.hasSuffix(".elf") || FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        return text
    }

    // The whole file.

    mutating func validate(_ settings: [XLSetting]) throws(XLConfigError) -> DomainSpec {
        var name: String?
        var kernel: String?
        var ramdisk: String?
        var extra: XLSetting?, root: XLSetting?
        var cmdlineText: String?, extraText: String?, rootText: String?
        var memory = XLConfig.defaultMemoryMiB
        var vcpus = 1
        var maxVCPUs: (setting: XLSetting, value: Int)?
        var hard: (setting: XLSetting, masks: [String], perVCPU: Bool)?
        var soft: (setting: XLSetting, masks: [String], perVCPU: Bool)?
        var weight: Int?
        var cap: (setting: XLSetting, text: String, value: UInt64?)?
        var engine: String?
        var onPowerOff = DomainEndAction.destroy, onReboot = DomainEndAction.restart, onCrash = DomainEndAction.destroy
        var disks: [DiskConfiguration] = []
        var networks: [NetworkConfiguration] = []
        var console: ConsoleDevice?

        // Each key on its own, in file order, so the first problem reported is the earliest.
        for s in settings {
            switch s.key {
            case "name":
                let text = try string(s)
                guard Self.isValidName(text) else {
                    throw fail(s, "\(shownQuoted(text)) is not a domain name: use 1-64 letters, digits, '_', '.' or '-'")
                }
                name = text
            case "kernel": kernel = resolvedKernel(try nonEmptyString(s))
            case "ramdisk": ramdisk = resolvedPath(try nonEmptyString(s))
            case "cmdline": cmdlineText = try string(s)
            case "extra": extra = s; extraText = try string(s)
            case "root": root = s; rootText = try string(s)
            case "memory":
                memory = UInt64(try integer(s, in: XLConfig.memoryRangeMiB, " (MiB)"))
            case "vcpus":
                vcpus = try integer(s, in: 1...UInt64(Domain.maximumVCPUs))
            case "maxvcpus":
                maxVCPUs = (s, try integer(s, in: 1...UInt64(UInt32.max)))
            case "cpus":
                let a = try affinity(s)
                hard = (s, a.masks, a.perVCPU)
            case "cpus_soft":
                let a = try affinity(s)
                soft = (s, a.masks, a.perVCPU)
            case "cpu_weight":
                weight = try integer(s, in: XLConfig.weightRange)
            case "cap":
                let (text, value) = try integer(s)
                cap = (s, text, value)
            case "engine":
                let text = try string(s)
                if let problem = EngineRegistry.problem(withName: text) { throw fail(s, problem) }
                engine = text
            case "on_poweroff": onPowerOff = try endAction(s)
            case "on_reboot": onReboot = try endAction(s)
            case "on_crash": onCrash = try endAction(s)
            case "disk": disks = try diskList(s)
            case "vif": networks = try vifList(s)
            case "console":
                let text = try string(s)
                guard let device = ConsoleDevice(rawValue: text) else {
                    throw fail(s, ConsoleDevice.problem(withName: text) ?? text)
                }
                console = device
            default:
                if XLConfig.ignoredKeys.contains(s.key) {
                    warn(s, "ignored by Visor")
                } else {
                    throw fail(s, "unknown key; Visor understands "
                                  + XLConfig.understoodKeys.joined(separator: ", ")
                                  + " (and ignores " + XLConfig.ignoredKeys.joined(separator: ", ") + ")")
                }
            }
        }

        // Keys that depend on one another.
        guard let name else {
            throw XLConfigError(path: path, key: "name", message: "missing: every domain needs a name (name = \"guest\")")
        }
        guard let kernel else {
            throw XLConfigError(path: path, key: "kernel",
                                message: "missing: say which kernel to boot (a path or a built-in guest name)")
        }
        if let (s, value) = maxVCPUs {
            if value < vcpus {
                throw fail(s, "\(value) is less than vcpus (\(vcpus)): maxvcpus is the most vCPUs the domain may ever have")
            }
            if value > vcpus {
                throw fail(s, "\(value) is more than vcpus (\(vcpus)): Visor does not hot-plug vCPUs, "
                              + "so maxvcpus must equal vcpus or be left out")
            }
        }
        var capValue: Int?
        if let (s, text, value) = cap {
            capValue = try checked(s, text: text, value: value, in: 0...UInt64(100 * vcpus),
                                   " (percent of one pCPU, at most 100 per vCPU; vcpus = \(vcpus))")
        }
        func masks(_ a: (setting: XLSetting, masks: [String], perVCPU: Bool)?) throws(XLConfigError) -> [String]? {
            guard let a else { return nil }
            guard a.perVCPU else { return Array(repeating: a.masks[0], count: vcpus) }
            guard a.masks.count <= vcpus else {
                throw fail(a.setting, "\(a.masks.count) cpu lists for \(vcpus) vCPU\(vcpus == 1 ? "" : "s"): "
                                      + "element i of the list is vCPU i's mask")
            }
            return a.masks
        }
        let hardAffinity = try masks(hard)
        let softAffinity = try masks(soft)

        // The command line as xl builds it: `cmdline` wins over `root` and `extra` when both are
        // given (xl prints a warning and so does Visor); otherwise "root=R E", "root=R" or "E".
        var commandLine = ""
        if let cmdlineText {
            commandLine = cmdlineText
            for s in [root, extra].compactMap({ $0 }) { warn(s, "ignored in favour of cmdline (as in xl)") }
        } else if let rootText {
            commandLine = "root=\(rootText)" + (extraText.map { " " + $0 } ?? "")
        } else if let extraText {
            commandLine = extraText
        }

        var spec = DomainSpec(name: name, kernel: kernel, ramdisk: ramdisk, commandLine: commandLine, memoryMiB: memory,
                              vcpus: vcpus, maxVCPUs: maxVCPUs?.value, hardAffinity: hardAffinity,
                              softAffinity: softAffinity, weight: weight, cap: capValue, engine: engine,
                              onPowerOff: onPowerOff, onReboot: onReboot, onCrash: onCrash, path: path)
        spec.disks = disks
        spec.networks = networks
        spec.console = console
        return spec
    }
}

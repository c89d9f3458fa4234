// The two ways a user names a disk: `visor run --disk FILE[,ro]` and xl.cfg's `disk = [ ... ]`
// entries in xl's disk specification syntax (xl-disk-configuration(5)). Visor has one kind of
// disk, a raw image file on virtio-blk: whatever else the syntax can say is refused by name.

extension DiskConfiguration {
    /// `--disk FILE[,ro]` (also `,rw`, the default). The text after the last comma is taken as
    /// an option only when it is one; a path may contain commas otherwise.
    public init(option text: String) throws(DiskSpecError) {
        var path = text
        var readOnly = false
        if let comma = text.lastIndex(of: ",") {
            let suffix = String(text[text.index(after: comma)...])
            switch suffix {
            case "ro": readOnly = true; path = String(text[..<comma])
            case "rw": path = String(text[..<comma])
            default:
                if !suffix.contains("/") && !suffix.contains(".") {
                    throw DiskSpecError("--disk '\(text)': '\(suffix)' is not an option: write FILE, FILE,ro or FILE,rw")
                }
            }
        }
        guard !path.isEmpty else { throw DiskSpecError("--disk '\(text)': no file named: write FILE, FILE,ro or FILE,rw") }
        self.init(path: path, readOnly: readOnly)
    }

    /// One xl disk specification: positional `target,format,vdev,access` (an empty field takes
    /// xl's default: format raw, access rw; vdev has none and is required) or the same as
    /// `key=value`s, mixed as xl allows. Visor supports format raw, access rw/ro (also w/r) and
    /// any vdev name (Linux calls the disks vda, vdb, ... in list order); other keys
    /// (devtype, backendtype, script, ...) are refused by name.
    /// `resolve` turns a relative target into a path (xl.cfg's directory).
    public init(xlSpec text: String, resolve: (String) -> String = { $0 }) throws(DiskSpecError) {
        let positionalNames = ["target", "format", "vdev", "access"]
        var values: [String: String] = [:]
        var position = 0
        // As in xl, a `target=` item takes the rest of the specification, commas and all.
        var items: [Substring] = []
        var rest = text[...]
        while true {
            let item = rest.prefix { $0 != "," }
            if item.trimmingSpaces.hasPrefix("target=") {
                let value = item.trimmingSpaces.dropFirst("target=".count)
                let tail = rest[item.endIndex...]
                values["target"] = String((value + tail).trimmingSpaces)
                break
            }
            items.append(item)
            guard item.endIndex < rest.endIndex else { break }
            rest = rest[rest.index(after: item.endIndex)...]
        }
        for rawItem in items {
            let item = rawItem.trimmingSpaces
            if let equals = item.firstIndex(of: "=") {
                let key = String(item[..<equals].trimmingSpaces)
                let value = String(item[item.index(after: equals)...].trimmingSpaces)
                guard positionalNames.contains(key) else {
                    throw DiskSpecError("disk '\(text)': '\(key)=' is not supported by Visor (it takes target, format, vdev and access)")
                }
                values[key] = value
                continue
            }
            if item == "cdrom" {
                throw DiskSpecError("disk '\(text)': CD-ROM devices are not supported by Visor")
            }
            // As xl does, a second positional parameter that is no format name is the vdev
            // ('disk.img,xvda,w' has no format).
            if position == 1, !item.isEmpty, !Self.xlFormats.contains(String(item)) { position = 2 }
            guard position < positionalNames.count else {
                throw DiskSpecError("disk '\(text)': '\(item)' is one positional parameter too many (target, format, vdev, access)")
            }
            if !item.isEmpty { values[positionalNames[position]] = String(item) }
            position += 1
        }
        guard var target = values["target"], !target.isEmpty else {
            throw DiskSpecError("disk '\(text)': no target (the image file)")
        }
        // xl's deprecated target prefixes: "file:" and "aio:" name an image file; "phy:" a host
        // block device, which Visor does not take.
        if let prefix = ["file:", "tap:aio:", "aio:"].first(where: { target.hasPrefix($0) }) { target.removeFirst(prefix.count) }
        if target.hasPrefix("phy:") {
            throw DiskSpecError("disk '\(text)': 'phy:' (a host block device) is not supported: Visor takes raw image files")
        }
        let format = values["format"] ?? "raw"
        guard format == "raw" else {
            throw DiskSpecError("disk '\(text)': format '\(format)' is not supported: Visor reads raw images only")
        }
        guard let vdev = values["vdev"], !vdev.isEmpty else {
            throw DiskSpecError("disk '\(text)': no vdev (the guest's name for the disk, such as xvda)")
        }
        let readOnly: Bool
        switch values["access"] ?? "rw" {
        case "rw", "w": readOnly = false
        case "ro", "r": readOnly = true
        case let other:
            throw DiskSpecError("disk '\(text)': access '\(other)' is not one of rw, ro (or w, r)")
        }
        self.init(path: resolve(target), readOnly: readOnly, vdev: vdev)
    }

    /// The disk as an xl disk specification that reads back as this disk: keywords, the target
    /// last (it may hold commas), and "file:" before a target that would read as a prefix.
    public var xlSpec: String {
        let prefixed = ["file:", "tap:aio:", "aio:", "phy:"].contains { path.hasPrefix($0) } || path.contains("target=")
        return "format=raw, vdev=\(vdev ?? "xvda"), access=\(readOnly ? "ro" : "rw"), target=\(prefixed ? "file:" : "")\(path)"
    }
}

extension DiskConfiguration {
    /// The format names xl knows (only raw is supported).
    static let xlFormats: Set<String> = ["raw", "qcow", "qcow2", "vhd", "qed", "empty"]
}

/// A disk specification Visor cannot use; the message names the problem.
public struct DiskSpecError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return text
    }
}

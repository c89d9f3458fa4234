// The two ways a user names a network interface: `visor run --net tap=NAME[,mac=MAC]` and
// xl.cfg's `vif = [ ... ]` entries in xl's syntax (xl-network-configuration(5)). Visor has one
// kind of interface, virtio-net on a host TAP: whatever else the syntax can say is refused by
// name.

import VisorVirtio

/// One network interface as the domain's configuration names it.
public struct NetworkConfiguration: Sendable, Equatable {
    /// The TAP to attach to (created if no interface has the name). Nil: Visor creates one
    /// named `vifN.I` (N the first free number, I the interface's index), as Xen names a
    /// domain's vifs.
    public var tap: String?
    /// A bridge to add the TAP to, after bringing the TAP up (xl.cfg `bridge=`).
    public var bridge: String?
    /// The guest's address; nil derives a stable one from the domain's name and the index.
    public var mac: MACAddress?

    public init(tap: String? = nil, bridge: String? = nil, mac: MACAddress? = nil) {
        self.tap = tap; self.bridge = bridge; self.mac = mac
    }

    /// The name pattern of a TAP Visor makes for interface `index`.
    static func defaultTapPattern(index: Int) -> String { "vif%d.\(index)" }

    /// The address the guest gets: the configured one, else one derived from the domain's
    /// name and the interface's index (the same from run to run).
    func address(domainName: String, index: Int) -> MACAddress {
        mac ?? MACAddress.derived(from: "\(domainName)/\(index)")
    }
}

extension NetworkConfiguration {
    /// `--net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]`.
    public init(option text: String) throws(NetSpecError) {
        let values = try Self.keyValues(text, what: "--net '\(text)'", allowed: ["tap", "mac"],
                                        hint: "write tap=NAME or tap=NAME,mac=XX:XX:XX:XX:XX:XX")
        guard let tap = values["tap"] else {
            throw NetSpecError("--net '\(text)': no tap=NAME: Visor attaches the guest's interface to a host TAP")
        }
        if let problem = TapDevice.nameProblem(tap) { throw NetSpecError("--net '\(text)': tap: \(problem)") }
        self.init(tap: tap, mac: try Self.mac(values["mac"], what: "--net '\(text)'"))
    }

    /// One xl vif specification: `key=value`s separated by commas. Visor takes `bridge` (a TAP
    /// Visor makes, brought up and added to the bridge), `vifname` (the TAP's name; also `tap`,
    /// Visor's own), `mac`, and `type`/`model` when they say nothing Visor cannot do.
    public init(xlSpec text: String) throws(NetSpecError) {
        let supported = ["bridge", "mac", "vifname", "tap", "type", "model"]
        let values = try Self.keyValues(text, what: "vif '\(text)'", allowed: supported,
                                        hint: "Visor takes \(supported.joined(separator: ", "))")
        if values["tap"] != nil && values["vifname"] != nil {
            throw NetSpecError("vif '\(text)': tap= and vifname= both name the TAP: give one")
        }
        if let type = values["type"], type != "vif" && type != "ioemu" {
            throw NetSpecError("vif '\(text)': type '\(type)' is not one of vif, ioemu")
        }
        if let model = values["model"], model != "virtio" && model != "virtio-net" {
            throw NetSpecError("vif '\(text)': model '\(model)' is not supported: Visor's interfaces are virtio-net")
        }
        let tap = values["tap"] ?? values["vifname"]
        if let tap, let problem = TapDevice.nameProblem(tap) { throw NetSpecError("vif '\(text)': \(problem)") }
        if let bridge = values["bridge"], let problem = TapDevice.nameProblem(bridge) {
            throw NetSpecError("vif '\(text)': bridge: \(problem)")
        }
        guard tap != nil || values["bridge"] != nil else {
            throw NetSpecError("vif '\(text)': no bridge= or tap=: name the bridge Visor adds its TAP to, or a TAP to use")
        }
        self.init(tap: tap, bridge: values["bridge"], mac: try Self.mac(values["mac"], what: "vif '\(text)'"))
    }

    /// The interface as an xl vif specification that reads back as this interface.
    public var xlSpec: String {
        var items: [String] = []
        if let bridge { items.append("bridge=\(bridge)") }
        if let tap { items.append("vifname=\(tap)") }
        if let mac { items.append("mac=\(mac)") }
        return items.joined(separator: ",")
    }

    /// `key=value` items separated by commas, each key once and among `allowed`.
    private static func keyValues(_ text: String, what: String, allowed: [String], hint: String) throws(NetSpecError) -> [String: String] {
        var values: [String: String] = [:]
        for rawItem in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = String(rawItem).trimmed(of: " \t")
            if item.isEmpty { continue }
            guard let equals = item.firstIndex(of: "=") else {
                throw NetSpecError("\(what): '\(item)' is not key=value: \(hint)")
            }
            let key = String(item[..<equals]).trimmed(of: " \t")
            let value = String(item[item.index(after: equals)...]).trimmed(of: " \t")
            guard allowed.contains(key) else {
                throw NetSpecError("\(what): '\(key)=' is not supported by Visor: \(hint)")
            }
            guard values[key] == nil else { throw NetSpecError("\(what): '\(key)=' is given twice") }
            values[key] = value
        }
        return values
    }

    private static func mac(_ text: String?, what: String) throws(NetSpecError) -> MACAddress? {
        guard let text else { return nil }
        guard let mac = MACAddress(text) else {
            throw NetSpecError("\(what): mac '\(text)' is not an address of the form XX:XX:XX:XX:XX:XX")
        }
        guard !mac.isMulticast else {
            throw NetSpecError("\(what): mac '\(text)' is a multicast address (the first byte is odd): an interface needs a unicast one")
        }
        return mac
    }
}

extension NetworkConfiguration {
    /// Opens interface `index`'s TAP (creating it when it does not exist); with a bridge, brings
    /// it up and adds it to the bridge, as Xen's vif-bridge script does. Returns the backend and
    /// the TAP's name. A TAP Visor created goes away when the backend is closed.
    func openTap(index: Int) throws(PacketBackendError) -> (backend: PacketDescriptor, tap: String) {
        let (backend, name) = try TapDevice.open(tap ?? Self.defaultTapPattern(index: index))
        if let bridge {
            try TapDevice.bringUp(name)
            try TapDevice.addToBridge(name, bridge: bridge)
        }
        return (backend, name)
    }
}

/// A network specification Visor cannot use; the message names the problem.
public struct NetSpecError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    fileprivate func trimmed(of set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

// What the xl-style commands do, as library calls over `APIClient`: each returns the text to
// print or throws a `CommandFailure` with the message and exit status. The CLI only parses.

import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A command that could not do its work: the message for standard error and the exit status.
public struct CommandFailure: Error, CustomStringConvertible {
    public var message: String
    public var status: Int32
    public var description: String { message }

    /// No daemon answered (EX_UNAVAILABLE).
    static func noDaemon(_ error: APIClientError) -> CommandFailure {
        switch error {
        case .noDaemon: return CommandFailure(message: error.description, status: ExitStatus.unavailable)
        case .transport: return CommandFailure(message: error.description, status: ExitStatus.internalFailure)
        }
    }
}

public struct ToolstackClient: Sendable {
    /// The daemon refused the request (its message says why), as xl's status 1.
    public static let refusedStatus: Int32 = 1

    public let client: APIClient
    public init(socketPath: String?) { client = APIClient(socketPath: SocketLocation.resolve(socketPath)) }

    /// A domain name as one path segment.
    static func segment(_ name: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;?#%")
        return name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name
    }

    private func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil,
                      contentType: String = "application/json", headers: [(String, String)] = []) throws(CommandFailure) -> APIReply {
        let reply: APIReply
        do {
            reply = try client.request(method, path, body: body, contentType: contentType, headers: headers)
        } catch {
            throw .noDaemon(error)
        }
        guard reply.isSuccess else { throw CommandFailure(message: reply.errorMessage, status: Self.refusedStatus) }
        return reply
    }

    private func decoded<T: Decodable>(_ reply: APIReply, _ type: T.Type) throws(CommandFailure) -> T {
        guard let value = reply.decode(type) else {
            throw CommandFailure(message: "the daemon's answer is not the JSON expected", status: ExitStatus.internalFailure)
        }
        return value
    }

    /// `visor create CFG`: sends the file's text with its absolute path (for relative paths in it);
    /// a file whose name ends in `.json` is the configuration's JSON form (an object of xl.cfg keys).
    public func create(configurationFile path: String) throws(CommandFailure) -> DomainInfo {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw CommandFailure(message: "\(path): the domain configuration file does not exist", status: ExitStatus.badInput)
        }
        guard let data = FileManager.default.contents(atPath: absolute) else {
            throw CommandFailure(message: "\(path): the domain configuration file cannot be read", status: ExitStatus.badInput)
        }
        guard data.count <= XLConfig.maximumFileBytes else {
            throw CommandFailure(message: "\(path): is \(data.count) bytes long; a domain configuration may have at most \(XLConfig.maximumFileBytes)",
                                 status: ExitStatus.badInput)
        }
        var target = URLComponents()
        target.path = "/domains"
        target.queryItems = [URLQueryItem(name: "path", value: absolute)]
        let uri = target.percentEncodedPath + "?" + (target.percentEncodedQuery ?? "")
        let json = absolute.lowercased().hasSuffix(".json")
        return try decoded(try call(.POST, uri, body: Array(data), contentType: json ? "application/json" : "text/plain"),
                           DomainInfo.self)
    }

    public func list() throws(CommandFailure) -> [DomainInfo] {
        try decoded(try call(.GET, "/domains"), [DomainInfo].self)
    }

    public func domain(_ name: String) throws(CommandFailure) -> DomainInfo {
        try decoded(try call(.GET, "/domains/\(Self.segment(name))"), DomainInfo.self)
    }

    /// `visor list -l`: every domain's long listing, or those named.
    public func details(_ names: [String]) throws(CommandFailure) -> [DomainDetail] {
        guard !names.isEmpty else { return try decoded(try call(.GET, "/domains?detail=true"), [DomainDetail].self) }
        var details: [DomainDetail] = []
        for name in names {
            details.append(try decoded(try call(.GET, "/domains/\(Self.segment(name))?detail=true"), DomainDetail.self))
        }
        return details
    }

    public func pause(_ name: String) throws(CommandFailure) -> DomainInfo {
        try decoded(try call(.POST, "/domains/\(Self.segment(name))/pause"), DomainInfo.self)
    }

    public func unpause(_ name: String) throws(CommandFailure) -> DomainInfo {
        try decoded(try call(.POST, "/domains/\(Self.segment(name))/unpause"), DomainInfo.self)
    }

    /// `visor shutdown` / `visor reboot`: asks the guest; with `timeoutSeconds`, the daemon
    /// destroys (or resets) it if it has not ended by then.
    public func requestShutdown(_ name: String, reboot: Bool, timeoutSeconds: Int?) throws(CommandFailure) -> ShutdownAnswer {
        let body = timeoutSeconds.map { APIJSON.encode(ShutdownOptions(timeoutSeconds: $0)) }
        return try decoded(try call(.POST, "/domains/\(Self.segment(name))/\(reboot ? "reboot" : "shutdown")", body: body),
                           ShutdownAnswer.self)
    }

    /// `-w`: waits until the domain with ID `id` has ended: gone from the list, listed under
    /// another ID (restarted), or listed as ended (preserved). Polls every 100 ms.
    public func waitForEnd(of name: String, id: UInt32) throws(CommandFailure) {
        while true {
            let listed = try list()
            // Dying ("d"): ended, and the daemon is still carrying out its end action (a restart
            // lists the new domain only then), so that is not the end yet. Shut down or crashed
            // without "d": preserved.
            guard let now = listed.first(where: { $0.name == name }), now.id == id,
                  now.state.contains("d") || !(now.state.contains("s") || now.state.contains("c")) else { return }
            usleep(100_000)
        }
    }

    public func destroy(_ name: String) throws(CommandFailure) -> DomainInfo {
        try decoded(try call(.DELETE, "/domains/\(Self.segment(name))"), DomainInfo.self)
    }

    public func schedParameters(_ name: String) throws(CommandFailure) -> SchedParameters {
        try decoded(try call(.GET, "/domains/\(Self.segment(name))/sched"), SchedParameters.self)
    }

    public func setSchedParameters(_ name: String, _ change: SchedParameters) throws(CommandFailure) -> SchedParameters {
        try decoded(try call(.PUT, "/domains/\(Self.segment(name))/sched", body: APIJSON.encode(change)),
                    SchedParameters.self)
    }

    /// `visor sched-credit` / `sched-credit2`: with `weight` or `cap`, sets them on `domain`;
    /// then shows the weight and cap of `domain`, or of every domain. Refused when the daemon
    /// runs another scheduler, as xl refuses.
    public func shares(scheduler: String, domain: String?, weight: Int?, cap: Int?) throws(CommandFailure) -> String {
        let running = try hostInfo().scheduler
        guard running == scheduler else {
            let other = ["credit", "credit2"].contains(running) ? "; use visor sched-\(running)" : ""
            throw CommandFailure(message: "the daemon's scheduler is \(running), not \(scheduler)\(other)", status: Self.refusedStatus)
        }
        if weight != nil || cap != nil {
            guard let domain else {
                throw CommandFailure(message: "-w and -c need a domain: -d NAME", status: ExitStatus.badOption)
            }
            _ = try setSchedParameters(domain, SchedParameters(scheduler: scheduler, weight: weight, cap: cap))
        }
        let domains: [DomainInfo]
        if let domain { domains = [try self.domain(domain)] } else { domains = try list() }
        return ToolstackFormat.shares(domains)
    }

    public func vcpuSchedParameters(_ name: String) throws(CommandFailure) -> [VCPUSchedParameters] {
        try decoded(try call(.GET, "/domains/\(Self.segment(name))/sched/vcpus"), [VCPUSchedParameters].self)
    }

    /// `vcpu`: a number or all.
    public func setVCPUSchedParameters(_ name: String, vcpu: String,
                                       _ change: SchedParameters) throws(CommandFailure) -> [VCPUSchedParameters] {
        try decoded(try call(.PUT, "/domains/\(Self.segment(name))/sched/vcpus/\(Self.segment(vcpu))", body: APIJSON.encode(change)),
                    [VCPUSchedParameters].self)
    }

    /// `visor sched-rtds`, as `xl sched-rtds`: with no domain, every vCPU of every domain; with a
    /// domain, its row (the defaults a domain-wide change starts from, as Xen reports); with
    /// vCPUs, theirs. With a change (period, budget, extratime), it is made first: on the listed
    /// vCPUs (`change[i]` for `vcpus[i]`), or on every vCPU of the domain when none is listed;
    /// then the changed vCPUs are shown. Refused, naming the daemon's scheduler, when it is not rtds.
    public func rtds(domain: String?, vcpus: [String], changes: [SchedParameters]) throws(CommandFailure) -> String {
        let running = try hostInfo().scheduler
        guard running == "rtds" else {
            let other = ["credit", "credit2"].contains(running) ? "; use visor sched-\(running)" : ""
            throw CommandFailure(message: "the daemon's scheduler is \(running), not rtds\(other)", status: Self.refusedStatus)
        }
        guard let domain else {
            guard vcpus.isEmpty, changes.isEmpty else {
                throw CommandFailure(message: "-v, -p, -b and -e need a domain: -d NAME", status: ExitStatus.badOption)
            }
            var all: [VCPUSchedParameters] = []
            for d in try list() {
                // A domain that ends between the list and its vCPUs is left out.
                do { all += try vcpuSchedParameters(d.name) } catch where error.status == Self.refusedStatus { continue }
            }
            return ToolstackFormat.rtdsVCPUs(all)
        }
        if !changes.isEmpty {
            // One change for every listed vCPU, or one per vCPU in order (the command checks the counts).
            let targets = vcpus.isEmpty ? ["all"] : vcpus
            let pairs = changes.count == 1 ? targets.map { ($0, changes[0]) } : Array(zip(targets, changes))
            for (vcpu, change) in pairs { _ = try setVCPUSchedParameters(domain, vcpu: vcpu, change) }
        } else if vcpus.isEmpty {
            let info = try self.domain(domain)
            return ToolstackFormat.rtdsDomains([(info, try schedParameters(domain))])
        }
        let now = try vcpuSchedParameters(domain)
        for v in vcpus where v != "all" && !now.contains(where: { String($0.vcpu) == v }) {
            throw CommandFailure(message: "domain '\(domain)' has vCPUs 0-\(now.count - 1), not \(v)", status: Self.refusedStatus)
        }
        let shown = vcpus.isEmpty || vcpus.contains("all") ? now : now.filter { vcpus.contains(String($0.vcpu)) }
        return ToolstackFormat.rtdsVCPUs(shown)
    }

    /// `visor vcpu-list [NAME]`.
    public func vcpus(_ name: String?) throws(CommandFailure) -> [VCPUStatus] {
        try decoded(try call(.GET, name.map { "/domains/\(Self.segment($0))/vcpus" } ?? "/vcpus"), [VCPUStatus].self)
    }

    /// `visor vcpu-pin NAME VCPU HARD [SOFT]`: VCPU a number or all; "-" leaves a list unchanged.
    public func pin(_ name: String, vcpu: String, hard: String, soft: String?) throws(CommandFailure) -> [VCPUStatus] {
        let body = APIJSON.encode(AffinityChange(hard: hard, soft: soft))
        return try decoded(try call(.PUT, "/domains/\(Self.segment(name))/vcpus/\(Self.segment(vcpu))/affinity", body: body),
                           [VCPUStatus].self)
    }

    public func hostInfo() throws(CommandFailure) -> HostInfo {
        try decoded(try call(.GET, "/host"), HostInfo.self)
    }

    public func dmesg() throws(CommandFailure) -> [String] {
        try decoded(try call(.GET, "/dmesg"), LogBody.self).lines
    }

    /// Offers bytes to the domain's console input; `writerKey` is the key a writer's attach got.
    public func sendConsoleInput(_ name: String, _ bytes: [UInt8], writerKey: String? = nil) throws(CommandFailure) -> Int {
        try decoded(try call(.POST, "/domains/\(Self.segment(name))/console", body: bytes,
                             contentType: "application/octet-stream",
                             headers: writerKey.map { [(APIRequest.consoleWriterHeader, $0)] } ?? []),
                    ConsoleInputBody.self).accepted
    }

    /// `visor console NAME`: the domain's console on this terminal until Ctrl-] (detach) or the
    /// domain ends, as its one writer, or only watching with `readOnly`. Returns the line to
    /// print at the end, if any.
    public func console(_ name: String, readOnly: Bool = false) throws(CommandFailure) -> String? {
        try console(name, readOnly: readOnly, signals: DetachOnSignal())
    }

    /// `visor create -c`: creates the domain, tells `created`, then attaches to its console.
    public func createAndAttach(configurationFile path: String,
                                created: (DomainInfo) -> Void) throws(CommandFailure) -> String? {
        let signals = DetachOnSignal()  // before the first connection starts NIO's threads
        let info = try create(configurationFile: path)
        created(info)
        return try console(info.name, signals: signals)
    }

    func console(_ name: String, readOnly: Bool = false, signals stopping: DetachOnSignal) throws(CommandFailure) -> String? {
        // The domain must exist before the terminal goes raw, so a typo gets a plain message.
        _ = try domain(name)
        let terminal = HostConsole()
        let stream: (channel: any Channel, done: EventLoopFuture<APIReply>)
        // The answer's head says whether this attach is the writer (and its key) or was refused.
        let head = Mutex<(status: Int, key: String?)?>(nil)
        let headArrived = DispatchSemaphore(value: 0)
        do {
            stream = try client.stream("/domains/\(Self.segment(name))/console\(readOnly ? "" : "?writer=true")",
                                       onHead: { status, headers in
                                           head.withLock { $0 = (status, headers.first(name: APIRequest.consoleWriterHeader)) }
                                           headArrived.signal()
                                       },
                                       onBody: { bytes in bytes.withUnsafeBytes { terminal.write($0) } })
        } catch {
            throw .noDaemon(error)
        }
        stream.done.whenComplete { _ in headArrived.signal() }
        headArrived.wait()
        let answered = head.withLock { $0 }
        guard let answered, (200..<300).contains(answered.status) else {
            let reply = try? stream.done.wait()
            throw CommandFailure(message: reply?.errorMessage ?? "the daemon closed the console connection",
                                 status: Self.refusedStatus)
        }
        let detached = Atomic<Bool>(false)
        let sender = ConsoleInputSender(client: self, name: name, writerKey: answered.key)
        let channel = stream.channel
        stopping.watch(channel)
        // A read-only attach takes keys only to watch for Ctrl-]; the rest go nowhere.
        terminal.startInput(deliver: { byte in readOnly ? true : sender.enqueue(byte) },
                            escape: {
                                detached.store(true, ordering: .releasing)
                                channel.close(promise: nil)
                            })
        let reply = try? stream.done.wait()
        terminal.stop()
        if detached.load(ordering: .acquiring) { return nil }
        if stopping.signalled { return "detached from domain '\(name)' by a signal" }
        if let reply, !reply.isSuccess { throw CommandFailure(message: reply.errorMessage, status: Self.refusedStatus) }
        return "domain '\(name)' ended"
    }
}

/// SIGINT, SIGTERM and SIGHUP detach a console as Ctrl-] does, so the terminal is given back in
/// its mode. Make it before any thread starts: every later thread (NIO's) inherits the blocked
/// signals, and one thread takes them.
final class DetachOnSignal: Sendable {
    private let state = Mutex<(signalled: Bool, channel: (any Channel)?)>((false, nil))

    init() {
        SignalStop.install { [self] _ in
            state.withLock { s in
                s.signalled = true
                s.channel?.close(promise: nil)
            }
        }
    }

    /// Closes `channel` on a signal (at once if one came already).
    func watch(_ channel: any Channel) {
        let early = state.withLock { s -> Bool in
            s.channel = channel
            return s.signalled
        }
        if early { channel.close(promise: nil) }
    }

    var signalled: Bool { state.withLock { $0.signalled } }
}

/// Console input on its way to the daemon: typed bytes are queued and sent in batches by one
/// request at a time, so a paste does not become thousands of requests.
final class ConsoleInputSender: Sendable {
    static let capacity = HostConsole.inputBacklogCapacity
    private let client: ToolstackClient
    private let name: String
    private let writerKey: String?
    private let state = Mutex<(queue: [UInt8], sending: Bool)>(([], false))
    private let queue = DispatchQueue(label: "visor.console.input")

    init(client: ToolstackClient, name: String, writerKey: String?) {
        self.client = client; self.name = name; self.writerKey = writerKey
    }

    /// Queues a byte; false when the queue is full (HostConsole keeps it and offers it again).
    func enqueue(_ byte: UInt8) -> Bool {
        let start = state.withLock { s -> Bool? in
            guard s.queue.count < Self.capacity else { return nil }
            s.queue.append(byte)
            defer { s.sending = true }
            return !s.sending
        }
        guard let start else { return false }
        if start { queue.async { self.drain() } }
        return true
    }

    private func drain() {
        while true {
            let batch = state.withLock { s -> [UInt8] in
                defer { s.queue = [] }
                if s.queue.isEmpty { s.sending = false }
                return s.queue
            }
            guard !batch.isEmpty else { return }
            _ = try? client.sendConsoleInput(name, batch, writerKey: writerKey)
        }
    }
}

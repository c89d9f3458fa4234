// The HTTP+JSON API on the daemon's Unix socket, after Firecracker's: SwiftNIO parses HTTP/1.1
// (NIOHTTP1), `APIRequest.parse` (APIRequest.swift) turns a request into one toolstack call or a
// refusal, and each response closes its connection. The toolstack's calls can wait (building a
// guest, a domain's threads ending), so they run on a small thread pool, never on the event loop; console streams are fed from
// the guests' vCPU threads through `ConsoleStream`, which only queues and lets the event loop
// write.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An HTTP response to send whole.
struct APIResponse: Sendable {
    var status: HTTPResponseStatus
    var body: [UInt8]
    var headers: [(String, String)] = []

    static func json<T: Encodable>(_ value: T, status: HTTPResponseStatus = .ok) -> APIResponse {
        APIResponse(status: status, body: APIJSON.encode(value))
    }

    static func error(_ status: HTTPResponseStatus, _ message: String) -> APIResponse {
        json(APIErrorBody(error: message), status: status)
    }

    static func error(_ error: ToolstackError) -> APIResponse {
        switch error {
        case .badRequest(let m): return .error(.badRequest, m)
        case .notFound(let m): return .error(.notFound, m)
        case .conflict(let m): return .error(.conflict, m)
        case .unavailable(let m): return .error(.serviceUnavailable, m)
        }
    }
}

/// The API server: listening on a Unix socket, answering from a `Toolstack`.
public final class APIServer: Sendable {
    /// The largest request body taken (an xl.cfg file has at most this many bytes too).
    public static let maximumBodyBytes = APIRequest.maximumBodyBytes

    /// How long a connection has to deliver its request by default.
    public static let defaultRequestTimeout = TimeAmount.seconds(60)

    let toolstack: Toolstack
    private let group: MultiThreadedEventLoopGroup
    private let workers: NIOThreadPool
    private let requestTimeout: TimeAmount
    private let channel: Mutex<(any Channel)?> = Mutex(nil)

    public init(toolstack: Toolstack, requestTimeout: TimeAmount = defaultRequestTimeout) {
        self.toolstack = toolstack
        self.requestTimeout = requestTimeout
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        workers = NIOThreadPool(numberOfThreads: 2)
    }

    /// Starts listening on `socketPath` (which must not exist), with mode 0600.
    public func start(socketPath: String) throws {
        workers.start()
        let toolstack = self.toolstack
        let workers = self.workers
        let requestTimeout = self.requestTimeout
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        APIHandler(toolstack: toolstack, workers: workers, requestTimeout: requestTimeout))
                }
            }
        // The socket file is created by bind with the process umask: make it 0600 from the start,
        // so no other user can connect in the moment before a chmod.
        let previous = umask(0o177)
        defer { umask(previous) }
        let listening = try bootstrap.bind(unixDomainSocketPath: socketPath).wait()
        chmod(socketPath, 0o600)
        channel.withLock { $0 = listening }
    }

    /// Stops accepting connections (open console streams end when their domains do).
    public func stopListening() {
        let listening = channel.withLock { c -> (any Channel)? in defer { c = nil }; return c }
        try? listening?.close().wait()
    }

    /// Releases the event loop and the workers.
    public func shutdown() {
        stopListening()
        try? workers.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }
}

/// One connection: one request, one response, then close.
final class APIHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let toolstack: Toolstack
    private let workers: NIOThreadPool
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    /// A request has been answered or is being: later parts are ignored.
    private var responding = false
    /// The console this connection streams, to detach when it closes.
    private var consoleToken: (DomainConsole, UInt64)?

    /// A connection must deliver its whole request within `requestTimeout`, or it is closed: a
    /// client that connects and says nothing must not hold a connection for ever.
    private let requestTimeout: TimeAmount
    private var requestDeadline: Scheduled<Void>?

    init(toolstack: Toolstack, workers: NIOThreadPool, requestTimeout: TimeAmount) {
        self.toolstack = toolstack
        self.workers = workers
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        requestDeadline = context.eventLoop.scheduleTask(in: requestTimeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        requestDeadline?.cancel()
        requestDeadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            guard !responding, head == nil else { return }
            head = requestHead
        case .body(var buffer):
            guard !responding, !tooLarge else { return }
            if body.count + buffer.readableBytes > APIServer.maximumBodyBytes {
                tooLarge = true
                body = []
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body.append(contentsOf: bytes)
            }
        case .end:
            guard !responding, let head else { return }
            responding = true
            requestDeadline?.cancel()
            requestDeadline = nil
            if tooLarge {
                send(.error(.payloadTooLarge, "the request body is larger than \(APIServer.maximumBodyBytes) bytes"),
                     context: context)
                return
            }
            dispatch(head, body: body, context: context)
        }
    }

    /// A request NIO's codec could not parse has had its 400 (HTTPServerProtocolErrorHandler);
    /// the connection is of no further use.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let (console, token) = consoleToken { console.detach(token) }
        consoleToken = nil
        context.fireChannelInactive()
    }

    private func dispatch(_ head: HTTPRequestHead, body: [UInt8], context: ChannelHandlerContext) {
        let request: APIRequest
        switch APIRequest.parse(method: head.method.rawValue, uri: head.uri,
                                contentType: head.headers.first(name: "Content-Type"),
                                writerKey: head.headers.first(name: APIRequest.consoleWriterHeader), body: body) {
        case .success(let r): request = r
        case .failure(let problem):
            var response = APIResponse.error(HTTPResponseStatus(statusCode: problem.status), problem.message)
            if !problem.allow.isEmpty { response.headers.append(("Allow", problem.allow.joined(separator: ", "))) }
            return send(response, context: context)
        }
        let toolstack = self.toolstack
        switch request {
        case .consoleStream(let name, let writer):
            startConsoleStream(name, writer: writer, context: context)
        case .hostInfo:
            send(.json(toolstack.hostInfo()), context: context)
        case .dmesg:
            send(.json(LogBody(lines: toolstack.log.text)), context: context)
        case .listDomains:
            send(.json(toolstack.list()), context: context)
        case .listDomainDetails:
            send(.json(toolstack.details()), context: context)
        case .getDomain(let name):
            send(Self.answer { () throws(ToolstackError) in try toolstack.info(of: name) }, context: context)
        case .getDomainDetail(let name):
            send(Self.answer { () throws(ToolstackError) in try toolstack.detail(of: name) }, context: context)
        case .getSched(let name):
            send(Self.answer { () throws(ToolstackError) in try toolstack.schedParameters(of: name) }, context: context)
        case .getVCPUSched(let name):
            send(Self.answer { () throws(ToolstackError) in try toolstack.vcpuSchedParameters(of: name) }, context: context)
        case .listVCPUs(let name):
            send(Self.answer { () throws(ToolstackError) in try toolstack.vcpus(of: name) }, context: context)
        default:
            // The rest may wait (guest builds, vCPUs parking, threads ending): off the event loop.
            let future = workers.runIfActive(eventLoop: context.eventLoop) { () -> APIResponse in
                Self.perform(request, toolstack: toolstack)
            }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            future.whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let response): handler.send(response, context: context)
                case .failure(let error): handler.send(.error(.serviceUnavailable, "the daemon is stopping: \(error)"), context: context)
                }
            }
        }
    }

    /// The toolstack calls that may block. Runs on a worker thread.
    private static func perform(_ request: APIRequest, toolstack: Toolstack) -> APIResponse {
        switch request {
        case .createDomain(let spec, let warnings):
            return answer(status: .created) { () throws(ToolstackError) in try toolstack.create(spec, warnings: warnings) }
        case .destroyDomain(let name):
            return answer { () throws(ToolstackError) in try toolstack.destroy(name) }
        case .pause(let name):
            return answer { () throws(ToolstackError) in try toolstack.pause(name) }
        case .unpause(let name):
            return answer { () throws(ToolstackError) in try toolstack.unpause(name) }
        case .requestShutdown(let name, let request, let options):
            return answer { () throws(ToolstackError) in
                try toolstack.requestShutdown(name, request, timeoutSeconds: options.timeoutSeconds)
            }
        case .consoleInput(let name, let bytes, let writerKey):
            return answer { () throws(ToolstackError) in
                ConsoleInputBody(accepted: try toolstack.sendConsoleInput(name, bytes, writerKey: writerKey))
            }
        case .setSched(let name, let change):
            return answer { () throws(ToolstackError) in try toolstack.setSchedParameters(of: name, change) }
        case .setVCPUSched(let name, let vcpu, let change):
            return answer { () throws(ToolstackError) in try toolstack.setVCPUSchedParameters(of: name, vcpu: vcpu, change) }
        case .pin(let name, let vcpu, let change):
            return answer { () throws(ToolstackError) in try toolstack.pin(name, vcpu: vcpu, change) }
        case .hostInfo, .dmesg, .listDomains, .listDomainDetails, .getDomain, .getDomainDetail, .consoleStream,
             .getSched, .getVCPUSched, .listVCPUs:
            return .error(.internalServerError, "route handled elsewhere")
        }
    }

    private static func answer<T: Encodable>(status: HTTPResponseStatus = .ok,
                                             _ body: () throws(ToolstackError) -> T) -> APIResponse {
        do {
            return .json(try body(), status: status)
        } catch {
            return .error(error)
        }
    }

    /// `GET /domains/NAME/console`: the kept output, then the live output as it comes, in one
    /// chunked response that ends when the domain does (or the client goes). With `writer`, the
    /// connection is the console's one writer while it lasts: the key its input must carry is in
    /// the response's `Visor-Console-Writer` header; a second writer gets a 409. An ended domain
    /// kept by `preserve` gives its kept output and ends.
    private func startConsoleStream(_ name: String, writer: Bool, context: ChannelHandlerContext) {
        let console: DomainConsole
        do {
            console = try toolstack.console(of: name)
        } catch {
            return send(.error(error), context: context)
        }
        let stream = ConsoleStream(channel: context.channel)
        let reader = ConsoleReader(receive: { stream.receive($0) }, closed: { stream.finish() })
        let attachment: DomainConsole.Attachment?
        switch console.attach(reader, writing: writer) {
        case .success(let a): attachment = a
        case .failure(.writerPresent):
            return send(.error(.conflict, "domain '\(name)' already has a console writer attached; attach read-only "
                               + "(visor console --read-only) to watch"), context: context)
        case .failure(.closed): attachment = nil
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Connection", value: "close")
        if let key = attachment?.writerKey { headers.add(name: APIRequest.consoleWriterHeader, value: key) }
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                              promise: nil)
        guard let attachment else {
            stream.send(console.history)
            stream.finish()
            return
        }
        consoleToken = (console, attachment.token)
        stream.send(attachment.history)
    }

    private func send(_ response: APIResponse, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: "close")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))),
                      promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// A console stream's sending side. `receive` runs on a vCPU thread under its platform lock,
/// so it only appends to `pending` and, the first time, asks the event loop to write. A reader
/// that does not keep up loses output: bytes beyond `maximumPending` waiting here, and every
/// batch that finds the connection's send buffer full (NIO's high-water mark), so a stalled
/// reader costs the daemon bounded memory.
final class ConsoleStream: Sendable {
    static let maximumPending = 1 << 20
    private struct State {
        var pending: [UInt8] = []
        var flushScheduled = false
        var finished = false
        var dropped: UInt64 = 0
    }
    private let state = Mutex(State())
    private let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    func receive(_ byte: UInt8) {
        let schedule = state.withLock { s -> Bool in
            guard !s.finished else { return false }
            guard s.pending.count < Self.maximumPending else {
                s.dropped &+= 1
                return false
            }
            s.pending.append(byte)
            defer { s.flushScheduled = true }
            return !s.flushScheduled
        }
        if schedule { channel.eventLoop.execute { self.flush() } }
    }

    /// Sends bytes from the event loop's side (the history at attach).
    func send(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        write(bytes)
    }

    private func flush() {
        let writable = channel.isWritable
        let bytes = state.withLock { s -> [UInt8] in
            s.flushScheduled = false
            defer { s.pending = [] }
            if !writable { s.dropped &+= UInt64(s.pending.count) }
            return writable ? s.pending : []
        }
        if !bytes.isEmpty { write(bytes) }
    }

    private func write(_ bytes: [UInt8]) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
    }

    /// The domain ended: what is queued goes out, then the response ends and the connection closes.
    func finish() {
        let first = state.withLock { s -> Bool in
            defer { s.finished = true }
            return !s.finished
        }
        guard first else { return }
        let channel = self.channel
        channel.eventLoop.execute {
            self.flush()
            // The reader learns what it missed, at the end where it cannot garble the output.
            let dropped = self.state.withLock { $0.dropped }
            if dropped > 0 {
                self.write(Array("\r\n[visor: \(dropped) bytes of console output were dropped: this reader did not keep up]\r\n".utf8))
            }
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

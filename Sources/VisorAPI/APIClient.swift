// The client side of the API: one HTTP/1.1 request per connection to the daemon's Unix socket,
// through SwiftNIO's HTTP codec. The xl-style commands (`visor list`, `create`, ...) use it.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Why a request did not get an answer from a daemon.
public enum APIClientError: Error, CustomStringConvertible, Equatable {
    /// Nothing listens at the socket: none there, or a stale one.
    case noDaemon(socket: String, why: String)
    /// The connection broke or the answer was not HTTP.
    case transport(String)

    public var description: String {
        switch self {
        case .noDaemon(let socket, let why):
            return "no visor daemon is running at \(socket) (\(why)); start one with `visor serve` (or `visor serve --socket \(socket)`), or name another with --socket"
        case .transport(let message): return "the daemon's answer broke off: \(message)"
        }
    }
}

/// An answer: its status and body.
public struct APIReply: Sendable {
    public var status: Int
    public var body: [UInt8]

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The error message of a 4xx/5xx JSON body, or the body as text.
    public var errorMessage: String {
        APIJSON.decode(APIErrorBody.self, from: body)?.error ?? String(decoding: body.prefix(500), as: UTF8.self)
    }

    public func decode<T: Decodable>(_ type: T.Type) -> T? { APIJSON.decode(type, from: body) }
}

public struct APIClient: Sendable {
    public let socketPath: String

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Sends one request and waits for the whole answer.
    public func request(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil,
                        contentType: String = "application/json") throws(APIClientError) -> APIReply {
        try request(method, path, body: body, contentType: contentType, headers: [])
    }

    /// Streams a GET: `onHead` gets the status and headers, then `onBody` each chunk of a 2xx
    /// body as it arrives (both on the event loop). Returns the connection and a future for the
    /// status and, on error, the body.
    public func stream(_ path: String, onHead: (@Sendable (Int, HTTPHeaders) -> Void)? = nil,
                       onBody: @escaping @Sendable ([UInt8]) -> Void)
        throws(APIClientError) -> (channel: any Channel, done: EventLoopFuture<APIReply>) {
        let collector = ReplyCollector(onBody: onBody, onHead: onHead)
        let channel = try connect(collector)
        send(.GET, path, body: nil, contentType: "application/json", on: channel)
        return (channel, collector.futureResult(on: channel.eventLoop))
    }

    private func connect(_ collector: ReplyCollector) throws(APIClientError) -> any Channel {
        var info = stat()
        guard lstat(socketPath, &info) == 0 else { throw .noDaemon(socket: socketPath, why: "no such socket") }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw .noDaemon(socket: socketPath, why: "that path is not a socket")
        }
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ReplyHandler(collector: collector))
                }
            }
        do {
            return try bootstrap.connect(unixDomainSocketPath: socketPath).wait()
        } catch let error as IOError where error.errnoCode == ECONNREFUSED {
            throw .noDaemon(socket: socketPath, why: "a stale socket: nothing accepts connections on it")
        } catch {
            throw .noDaemon(socket: socketPath, why: "cannot connect: \(error)")
        }
    }

    /// Sends one request with the extra `headers` and waits for the whole answer.
    public func request(_ method: HTTPMethod, _ path: String, body: [UInt8]?, contentType: String,
                        headers: [(String, String)]) throws(APIClientError) -> APIReply {
        let collector = ReplyCollector(onBody: nil)
        let channel = try connect(collector)
        send(method, path, body: body, contentType: contentType, extraHeaders: headers, on: channel)
        do {
            return try collector.futureResult(on: channel.eventLoop).wait()
        } catch {
            throw .transport("\(error)")
        }
    }

    private func send(_ method: HTTPMethod, _ path: String, body: [UInt8]?, contentType: String,
                      extraHeaders: [(String, String)] = [], on channel: any Channel) {
        var headers = HTTPHeaders()
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        headers.add(name: "Host", value: "visor")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Content-Length", value: String(body?.count ?? 0))
        if body != nil { headers.add(name: "Content-Type", value: contentType) }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, !body.isEmpty {
            var buffer = channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }
}

/// Collects an answer; thread-safe, as the caller waits on another thread.
final class ReplyCollector: Sendable {
    let onBody: (@Sendable ([UInt8]) -> Void)?
    let onHead: (@Sendable (Int, HTTPHeaders) -> Void)?
    private struct State {
        var status: Int?
        var body: [UInt8] = []
        var promise: EventLoopPromise<APIReply>?
        var result: Result<APIReply, any Error>?
    }
    private let state = Mutex(State())

    init(onBody: (@Sendable ([UInt8]) -> Void)?, onHead: (@Sendable (Int, HTTPHeaders) -> Void)? = nil) {
        self.onBody = onBody; self.onHead = onHead
    }

    func futureResult(on eventLoop: any EventLoop) -> EventLoopFuture<APIReply> {
        let (promise, done) = state.withLock { s -> (EventLoopPromise<APIReply>, Result<APIReply, any Error>?) in
            let promise = s.promise ?? eventLoop.makePromise(of: APIReply.self)
            s.promise = promise
            return (promise, s.result)
        }
        if let done { promise.completeWith(done) }
        return promise.futureResult
    }

    func head(status: Int, headers: HTTPHeaders) {
        state.withLock { $0.status = status }
        onHead?(status, headers)
    }

    func body(_ bytes: [UInt8]) {
        let streaming = state.withLock { s -> Bool in
            let ok = (200..<300).contains(s.status ?? 0)
            if !(ok && onBody != nil) { s.body.append(contentsOf: bytes) }
            return ok && onBody != nil
        }
        if streaming { onBody?(bytes) }
    }

    func finish(_ error: (any Error)?) {
        let (promise, result) = state.withLock { s -> (EventLoopPromise<APIReply>?, Result<APIReply, any Error>) in
            if let r = s.result { return (nil, r) }
            let r: Result<APIReply, any Error>
            if let status = s.status, error == nil {
                r = .success(APIReply(status: status, body: s.body))
            } else {
                r = .failure(error ?? APIClientError.transport("the connection closed before an answer"))
            }
            s.result = r
            return (s.promise, r)
        }
        promise?.completeWith(result)
    }
}

final class ReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let collector: ReplyCollector

    init(collector: ReplyCollector) { self.collector = collector }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): collector.head(status: Int(head.status.code), headers: head.headers)
        case .body(var buffer): collector.body(buffer.readBytes(length: buffer.readableBytes) ?? [])
        case .end:
            collector.finish(nil)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        collector.finish(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        collector.finish(error)
        context.close(promise: nil)
    }
}

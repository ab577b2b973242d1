import HandoffWire

extension ServerSentEventDecoder {
    /// The benchmark's reading of Handoff's streams: comments kept with their events (the commit stamps), and no bound
    /// on a stream's length, since an idle stream is held open for the whole run.
    static var benchmark: ServerSentEventDecoder {
        ServerSentEventDecoder(maxStreamBytes: .max, keepsComments: true)
    }
}

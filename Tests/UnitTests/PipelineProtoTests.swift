import Foundation
import InfraSightPipelineProto
import InfraSightTestSupport
import Testing

/// The committed generated code matches proto/ and round-trips a batch.
@Suite struct PipelineProtoTests {
    @Test func aBatchRoundTripsThroughTheWireFormat() throws {
        var batch = Infrasight_V1_Batch()
        batch.batchID = "b-1"
        batch.table = "audit.tracing_events"
        batch.columns = [.with { $0.name = "pid"; $0.type = "UInt32" }, .with { $0.name = "comm"; $0.type = "String" }]
        batch.rows = Data([1, 0, 0, 0, 3, 0x63, 0x61, 0x74])
        batch.rowCount = 1
        batch.plugin = "tracing"
        batch.sequence = 42
        let message = Infrasight_V1_AgentMessage.with { $0.batch = batch }
        let decoded = try Infrasight_V1_AgentMessage(serializedBytes: try message.serializedBytes() as [UInt8])
        #expect(decoded.batch == batch)
        #expect(decoded.kind == .batch(batch))
    }

    @Test func theGeneratedServiceIsTheProtoService() {
        #expect(Infrasight_V1_Pipeline.descriptor.fullyQualifiedService == "infrasight.v1.Pipeline")
        let proto = try? String(contentsOfFile: "\(Paths.packageRoot)/proto/infrasight/v1/pipeline.proto", encoding: .utf8)
        #expect(proto?.contains("rpc Stream(stream AgentMessage) returns (stream ServerMessage);") == true)
    }
}

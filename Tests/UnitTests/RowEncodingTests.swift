import Foundation
import InfraSightCore
import InfraSightSchema
import Testing

@Suite struct RowEncodingTests {
    let schema = try! TableSchema(ddl: """
        CREATE TABLE audit.t (u UInt32, i Int64, f Float64, s String, n Nullable(String), d DateTime64(3), j JSON, e String)
        ENGINE = MergeTree() ORDER BY u
        """)

    @Test func encodesEveryTypeAsJSON() {
        let row = RowBuffer(schema: schema, tableIndex: 0)
        row.reset()
        row.setUInt(0, 4_294_967_295)
        row.setInt(1, -9_223_372_036_854_775_808)
        row.setFloat(2, 1.5)
        row.setString(3, "a\"b\\c\n\u{1}é")
        row.setNull(4)
        row.setInt(5, 1_795_310_611_824)
        row.setString(6, "{\"app\":\"demo\"}")
        var e = JSONRowEncoder()
        e.encode(row)
        let line = String(decoding: e.buffer, as: UTF8.self)
        #expect(line == """
            {"table":"t","u":4294967295,"i":-9223372036854775808,"f":1.500000,"s":"a\\"b\\\\c\\n\\u0001é","n":null,"d":"2026-11-22 01:23:31.824","j":{"app":"demo"},"e":""}

            """)
        #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil)
    }

    @Test func repairsInvalidUTF8() {
        let row = RowBuffer(schema: schema, tableIndex: 0)
        row.reset()
        let bytes: [UInt8] = [0x61, 0xFF, 0x62, 0xC3, 0xA9, 0xE2, 0x82, 0x63, 0xED, 0xA0, 0x80]
        bytes.withUnsafeBytes { row.setString(3, $0.baseAddress, $0.count) }
        #expect(row.string(3) == "a\u{FFFD}bé\u{FFFD}\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(!row.invalid)
    }

    @Test func aBadColumnIndexMarksTheRowInvalid() {
        let row = RowBuffer(schema: schema, tableIndex: 0)
        row.reset()
        row.setUInt(99, 1)
        #expect(row.invalid)
        row.reset()
        #expect(!row.invalid)
    }

    @Test func aStringThatDoesNotFitMarksTheRowInvalid() {
        let row = RowBuffer(schema: schema, tableIndex: 0, arenaCapacity: 8)
        row.reset()
        row.setString(3, "0123456789")
        #expect(row.invalid)
    }

    @Test func unsetColumnsGetTheirTypesDefault() {
        let row = RowBuffer(schema: schema, tableIndex: 0)
        row.reset()
        var e = JSONRowEncoder()
        e.encode(row)
        #expect(String(decoding: e.buffer, as: UTF8.self) == """
            {"table":"t","u":0,"i":0,"f":0,"s":"","n":null,"d":"1970-01-01 00:00:00.000","j":{},"e":""}

            """)
    }
}

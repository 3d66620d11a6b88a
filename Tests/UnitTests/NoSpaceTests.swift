import InfraSightStorage
import Testing

/// "The store is out of disk" makes the budget drop the oldest rows, so it is decided by
/// ClickHouse's error code, never by words a row can put in the message.
@Suite struct NoSpaceTests {
    @Test func onlyTheErrorsOwnCodeSaysTheDiskIsFull() {
        // What the engine and servers say when the disk is full.
        #expect(StorageError.saysNoSpace("query: Code: 243. DB::Exception: Cannot reserve 1.18 MiB, not enough space. (NOT_ENOUGH_SPACE)"))
        #expect(StorageError.saysNoSpace("Code: 243, e.displayText() = DB::Exception: Cannot reserve 40.00 MiB, not enough space"))
        #expect(StorageError.saysNoSpace("query: Code: 74. DB::ErrnoException: Cannot write to file /d/tmp.bin, errno: 28, strerror: No space left on device. (CANNOT_WRITE_TO_FILE_DESCRIPTOR)"))
        // A hostile row quoted in a parse error (measured on 26.9), or a write failing otherwise.
        #expect(!StorageError.saysNoSpace("query: Code: 117. DB::Exception: Cannot parse JSON object here: {\"a\": Code: 243 No space left on device (NOT_ENOUGH_SPACE), errno: 28,"))
        #expect(!StorageError.saysNoSpace("query: Code: 27. DB::Exception: Cannot parse input: expected '\\t' before: 'No space left on device'"))
        #expect(!StorageError.saysNoSpace("query: Code: 74. DB::ErrnoException: Cannot write to file /d/tmp.bin, errno: 5, strerror: Input/output error"))
        #expect(!StorageError.saysNoSpace("cannot reach ClickHouse: No space left on device"))
        #expect(StorageError.leadingCode("query: Code: 117. DB::Exception: x Code: 243") == 117)
    }
}

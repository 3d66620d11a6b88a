/// The kinds of value a plugin option takes. The raw values are the ABI's names
/// (`is_option_descriptor.type`): the SDK writes them, the host reads them back.
public enum OptionKind: String, Sendable {
    case int, string, bool
    case intList = "int-list"
    case stringList = "string-list"
}

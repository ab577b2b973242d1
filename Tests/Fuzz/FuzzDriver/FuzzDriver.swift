// What every fuzz target shares: handing the process to libFuzzer's driver.
//
// SwiftPM links an executable with `main` aliased to its module's entry point (`--defsym`), which shadows libFuzzer's
// own `main`: each target's top-level code is that entry point, and calls `runFuzzer` with its test function.
import Foundation

@_extern(c, "LLVMFuzzerRunDriver")
func runLibFuzzer(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafeRawPointer, Int) -> CInt
) -> CInt

/// Runs libFuzzer over `testOneInput` with the process's arguments, and exits with its status.
package func runFuzzer(_ testOneInput: @convention(c) (UnsafeRawPointer, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runLibFuzzer(&argc, &argv, testOneInput))
}

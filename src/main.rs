fn main() -> std::process::ExitCode {
    fwdguard::cli::main()
}

//! Compiles `fanfold.v1` with protox (pure Rust), so a fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fanfold/v1/fanfold.proto",
        "proto/fanfold/store/v1/store.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".fanfold.v1.Assign.data")
        .bytes(".fanfold.v1.Counts.keys")
        .bytes(".fanfold.v1.ChunkPiece.data")
        .bytes(".fanfold.v1.FetchPiece.data")
        .compile_fds(descriptors)?;
    Ok(())
}

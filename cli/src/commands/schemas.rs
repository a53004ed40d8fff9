use std::process::ExitCode;

use paystream_runtime::Config;
use paystream_schemas::all_schemas;

use super::codec;

/// `paystream schemas register`: registers every schema under `<prefix><topic>-value`.
pub async fn register(config: Config) -> anyhow::Result<ExitCode> {
    let codec = codec(&config)?;
    for (base_topic, full_name, schema) in all_schemas() {
        let topic = format!("{}{base_topic}", config.topics.prefix);
        let id = codec.register_schema(&topic, full_name, schema).await?;
        println!("registered {full_name:45} subject {topic}-value  id {id}");
    }
    Ok(ExitCode::SUCCESS)
}

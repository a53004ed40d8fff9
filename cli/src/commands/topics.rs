use std::process::ExitCode;

use paystream_processors::topology::payments_topology_description;
use paystream_runtime::Config;
use paystream_runtime::topic_admin::{Created, create_topics};

/// `paystream topics create`: prints each topic and whether it was created.
pub async fn create(config: Config) -> anyhow::Result<ExitCode> {
    let outcome = create_topics(&config, &payments_topology_description(&config)).await?;
    let mut created = 0;
    for (name, role, result) in &outcome {
        let state = match result {
            Created::Created => {
                created += 1;
                "created"
            }
            Created::AlreadyExisted => "exists",
        };
        println!("{state:8} {name:50} {role:?}");
    }
    println!(
        "{} topics ({created} created), {} partitions each, replication factor {}",
        outcome.len(),
        config.topics.partitions,
        config.topics.replication_factor
    );
    Ok(ExitCode::SUCCESS)
}

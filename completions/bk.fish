# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_bk_global_optspecs
    string join \n root= debug h/help V/version
end

function __fish_bk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_bk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_bk_using_subcommand
    set -l cmd (__fish_bk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c bk -n "__fish_bk_needs_command" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_needs_command" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_needs_command" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_needs_command" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_needs_command" -f -a "build" -d 'Build from a Dockerfile and a context'
complete -c bk -n "__fish_bk_needs_command" -f -a "du" -d 'Show disk usage of the build cache'
complete -c bk -n "__fish_bk_needs_command" -f -a "cache" -d 'Manage the build cache'
complete -c bk -n "__fish_bk_needs_command" -f -a "completion" -d 'Print a shell completion script'
complete -c bk -n "__fish_bk_needs_command" -f -a "debug" -d 'Developer tools: inspect what bk makes of a Dockerfile'
complete -c bk -n "__fish_bk_needs_command" -f -a "images" -d 'List the images in the local image store'
complete -c bk -n "__fish_bk_needs_command" -f -a "login" -d 'Log in to a registry (saves credentials where Docker keeps them)'
complete -c bk -n "__fish_bk_needs_command" -f -a "logout" -d 'Log out from a registry'
complete -c bk -n "__fish_bk_needs_command" -f -a "push" -d 'Push a local image to its registry'
complete -c bk -n "__fish_bk_needs_command" -f -a "rmi" -d 'Remove names from the local image store (blobs stay until pruned)'
complete -c bk -n "__fish_bk_needs_command" -f -a "tag" -d 'Give a local image another name'
complete -c bk -n "__fish_bk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand build" -s f -l file -d 'Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -s t -l tag -d 'Image name and optionally a tag (name:tag)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l target -d 'Stage to build' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l build-arg -d 'Build-time variable (KEY=VALUE, or KEY to take it from the environment)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l platform -d 'Target platforms (os/arch[/variant], comma separated)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -s o -l output -d 'Output destination (type=local|tar|oci|docker|image|registry,key=value…, or PATH, or -)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l insecure-registry -d 'Allow plain HTTP or an unverified certificate for this registry (HOST[:PORT])' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l cache-from -d 'External cache sources (type=registry,ref=… | type=local,src=… | REF)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l cache-to -d 'Cache export destinations (type=registry,ref=… | type=local,dest=… | type=inline)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l secret -d 'Secret to expose to RUN --mount=type=secret (id=ID[,src=PATH|,env=VAR])' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l ssh -d 'SSH agent socket or keys to expose (default|ID[=PATH,…])' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l build-context -d 'Additional build context: NAME[::PLATFORM]=DIR, docker-image://REF, oci-layout://PATH[:TAG][@DIGEST], target:STAGE, a git URL or a URL' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l network -d 'Networking mode for RUN instructions' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l allow -d 'Allow extra privileged entitlement (security.insecure, network.host)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l sandbox -d 'Isolation of RUN steps: default (namespaces; a user namespace without root) or none (no isolation: chroot as root, run on the host otherwise; for machines without user namespaces)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l no-cache-filter -d 'Do not cache the given stages' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l progress -d 'Progress output' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l metadata-file -d 'Write build result metadata to a file' -r -F
complete -c bk -n "__fish_bk_using_subcommand build" -l iidfile -d 'Write the image ID to a file' -r -F
complete -c bk -n "__fish_bk_using_subcommand build" -l label -d 'Set metadata for an image (KEY=VALUE)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l annotation -d 'Add an annotation to the image ([TYPE[[PLATFORM]],...:]KEY=VALUE; TYPE manifest, manifest-descriptor, index, index-descriptor)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l snapshotter -d 'How RUN gets a writable root file system (auto|overlayfs|fuse-overlayfs|native)' -r
complete -c bk -n "__fish_bk_using_subcommand build" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand build" -l push -d 'Shorthand for --output=type=registry'
complete -c bk -n "__fish_bk_using_subcommand build" -l load -d 'Shorthand for --output=type=docker (load into a local image store)'
complete -c bk -n "__fish_bk_using_subcommand build" -l no-cache -d 'Do not use cache when building'
complete -c bk -n "__fish_bk_using_subcommand build" -l pull -d 'Always attempt to pull newer versions of base images'
complete -c bk -n "__fish_bk_using_subcommand build" -s q -l quiet -d 'Suppress the build output and print the image ID on success'
complete -c bk -n "__fish_bk_using_subcommand build" -l check -d 'Check the Dockerfile without building'
complete -c bk -n "__fish_bk_using_subcommand build" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand build" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand build" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand du" -l filter -d 'Provide filter values (type=regular, id=PREFIX, description~=TEXT, until=24h)' -r
complete -c bk -n "__fish_bk_using_subcommand du" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand du" -s v -l verbose -d 'Print every record\'s details'
complete -c bk -n "__fish_bk_using_subcommand du" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand du" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand du" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -f -a "prune" -d 'Remove build cache'
complete -c bk -n "__fish_bk_using_subcommand cache; and not __fish_seen_subcommand_from prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -l keep-storage -d 'Amount of disk space to keep for cache' -r
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -l keep-duration -d 'Keep data newer than this limit' -r
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -l filter -d 'Provide filter values (type=regular, id=PREFIX, description~=TEXT, until=24h)' -r
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -s a -l all -d 'Include cache mounts (everything, not just layer cache)'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -s f -l force -d 'Do not prompt for confirmation'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove build cache'
complete -c bk -n "__fish_bk_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand completion" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand completion" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand completion" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand completion" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -f -a "parse" -d 'Print the Dockerfile\'s syntax tree in BuildKit\'s dump format'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -f -a "dump-llb" -d 'Print the build graph (LLB) as JSON lines, or as a Graphviz digraph'
complete -c bk -n "__fish_bk_using_subcommand debug; and not __fish_seen_subcommand_from parse dump-llb help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from parse" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from parse" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from parse" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from parse" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -s f -l file -d 'Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)' -r
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l target -d 'Stage to build' -r
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l build-arg -d 'Build-time variable (KEY=VALUE, or KEY to take it from the environment)' -r
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l platform -d 'Target platform (os/arch[/variant])' -r
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l no-cache -d 'Mark every step as not cacheable'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l dot -d 'Print a Graphviz digraph instead of JSON lines'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from dump-llb" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from help" -f -a "parse" -d 'Print the Dockerfile\'s syntax tree in BuildKit\'s dump format'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from help" -f -a "dump-llb" -d 'Print the build graph (LLB) as JSON lines, or as a Graphviz digraph'
complete -c bk -n "__fish_bk_using_subcommand debug; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand images" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand images" -s q -l quiet -d 'Only show image IDs'
complete -c bk -n "__fish_bk_using_subcommand images" -l digests -d 'Show the manifest digests'
complete -c bk -n "__fish_bk_using_subcommand images" -l no-trunc -d 'Don\'t truncate IDs'
complete -c bk -n "__fish_bk_using_subcommand images" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand images" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand images" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand login" -s u -l username -d 'Username' -r
complete -c bk -n "__fish_bk_using_subcommand login" -s p -l password -d 'Password (visible to other users of this machine: prefer --password-stdin)' -r
complete -c bk -n "__fish_bk_using_subcommand login" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand login" -l password-stdin -d 'Read the password from standard input'
complete -c bk -n "__fish_bk_using_subcommand login" -l insecure -d 'Allow plain HTTP or an unverified certificate for the registry'
complete -c bk -n "__fish_bk_using_subcommand login" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand login" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand login" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand logout" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand logout" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand logout" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand logout" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand push" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand push" -l insecure -d 'Allow plain HTTP or an unverified certificate for its registry'
complete -c bk -n "__fish_bk_using_subcommand push" -s q -l quiet -d 'Print only the pushed manifest\'s digest'
complete -c bk -n "__fish_bk_using_subcommand push" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand push" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand push" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand rmi" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand rmi" -s f -l force -d 'Remove every name of an image given by ID'
complete -c bk -n "__fish_bk_using_subcommand rmi" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand rmi" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand rmi" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand tag" -l root -d 'Store directory (cache, blobs, images)' -r -F
complete -c bk -n "__fish_bk_using_subcommand tag" -l debug -d 'Print debug logs'
complete -c bk -n "__fish_bk_using_subcommand tag" -s h -l help -d 'Print help'
complete -c bk -n "__fish_bk_using_subcommand tag" -s V -l version -d 'Print version'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "build" -d 'Build from a Dockerfile and a context'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "du" -d 'Show disk usage of the build cache'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "cache" -d 'Manage the build cache'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "completion" -d 'Print a shell completion script'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "debug" -d 'Developer tools: inspect what bk makes of a Dockerfile'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "images" -d 'List the images in the local image store'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "login" -d 'Log in to a registry (saves credentials where Docker keeps them)'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "logout" -d 'Log out from a registry'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "push" -d 'Push a local image to its registry'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "rmi" -d 'Remove names from the local image store (blobs stay until pruned)'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "tag" -d 'Give a local image another name'
complete -c bk -n "__fish_bk_using_subcommand help; and not __fish_seen_subcommand_from build du cache completion debug images login logout push rmi tag help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bk -n "__fish_bk_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "prune" -d 'Remove build cache'
complete -c bk -n "__fish_bk_using_subcommand help; and __fish_seen_subcommand_from debug" -f -a "parse" -d 'Print the Dockerfile\'s syntax tree in BuildKit\'s dump format'
complete -c bk -n "__fish_bk_using_subcommand help; and __fish_seen_subcommand_from debug" -f -a "dump-llb" -d 'Print the build graph (LLB) as JSON lines, or as a Graphviz digraph'

#!/bin/sh
# Render a role's S3 bucket policy template (docs/ROLES.md):
#   sh examples/roles/render.sh ROLE BUCKET PREFIX PRINCIPAL > policy.json
# ROLE is a file ROLE.bucket-policy.json beside this script; BUCKET and PREFIX are those of the
# repository (s3://BUCKET/PREFIX; PREFIX may be empty); PRINCIPAL is who the statements bind: an IAM
# ARN on AWS (arn:aws:iam::ACCOUNT:user/NAME), the access key id on versitygw. The result is one
# bucket policy; to give several roles their own principals in one bucket, render each and put all
# their Statement arrays in one document (a bucket has one policy).
set -eu
if [ $# -ne 4 ]; then
	echo "usage: $0 ROLE BUCKET PREFIX PRINCIPAL" >&2
	exit 2
fi
role=$1 bucket=$2 prefix=$3 principal=$4
dir=$(dirname "$0")
tpl="$dir/$role.bucket-policy.json"
if [ ! -f "$tpl" ]; then
	echo "$0: no template for role '$role': choose from $(cd "$dir" && ls *.bucket-policy.json | sed 's/\.bucket-policy\.json//' | tr '\n' ' ')" >&2
	exit 2
fi
case $bucket in
*[!a-z0-9.-]* | "") echo "$0: bucket '$bucket': use lower-case letters, digits, dots and hyphens" >&2; exit 2 ;;
esac
# The prefix is a folder: no leading slash, one trailing slash unless empty.
prefix=${prefix#/}
case $prefix in
"" | */) ;;
*) prefix="$prefix/" ;;
esac
case $prefix$principal in
*[\|\&\\\"]*) echo "$0: PREFIX and PRINCIPAL may not contain | & \\ or \"" >&2; exit 2 ;;
esac
sed -e "s|\${BUCKET}|$bucket|g" -e "s|\${PREFIX}|$prefix|g" -e "s|\${PRINCIPAL}|$principal|g" "$tpl"

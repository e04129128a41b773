resource "aws_instance" "web" {
ami = "ami-123"
  count    =   2
tags = { Name = "web", Env="prod" }
}
variable "region" {
default = "eu-west-1"
}
